"""URL converters. ``<anysku:sku>`` matches any stored SKU in one path parameter.

Django's ``str`` converter stops at ``/`` and its ``path`` converter (``.+``) at a line
break, so a legacy SKU holding either could not be reversed (the pages answered 500) or
reached (the API answered 404). This one matches any characters; ``reverse`` percent-encodes
them and the server decodes them back. NUL never reaches a view (``InputGuardMiddleware``).
"""

from __future__ import annotations

from django.urls import register_converter


class AnySkuConverter:
    regex = r"[\s\S]+"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(AnySkuConverter, "anysku")
