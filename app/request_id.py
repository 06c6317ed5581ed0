"""Request ids: one id per request, on the response, in every log record, in 500 pages.

nginx (deploy/nginx.conf.template) sends ``X-Request-ID: $request_id``; a sane incoming id
is kept so nginx's access log, Django's log and the client's error response name the same
request; anything else gets a fresh id. ``RequestIdMiddleware`` (app/middleware.py) sets it
for the request; ``RequestIdFilter`` puts it and the path on every log record.
"""

from __future__ import annotations

import logging
import re
import uuid
from contextvars import ContextVar
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseServerError
from django.template import loader

HEADER = "X-Request-ID"
META_KEY = "HTTP_X_REQUEST_ID"
_SANE = re.compile(r"[A-Za-z0-9._-]{1,128}")

# (request id, path) of the request this thread is serving, for log records that carry no
# request (the API's own error log, the app's loggers).
current: ContextVar[tuple[str, str] | None] = ContextVar("stockpipe_request", default=None)


def incoming_or_new(request: HttpRequest) -> str:
    """The client's (nginx's) id if it is short and plain, else a new random one."""
    value = request.META.get(META_KEY, "")
    if _SANE.fullmatch(value):
        return value
    return uuid.uuid4().hex


def of(request: HttpRequest) -> str | None:
    return getattr(request, "request_id", None)


def field(request: HttpRequest) -> dict[str, Any]:
    """``{"request_id": ...}`` for a JSON error body, empty without the middleware."""
    request_id = of(request)
    return {"request_id": request_id} if request_id else {}


class RequestIdFilter(logging.Filter):
    """Adds ``request_id`` and ``request_path`` to every record ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        request = getattr(record, "request", None)
        active = current.get()
        request_id = of(request) if request is not None else None
        path = getattr(request, "path", None)
        if active is not None:
            request_id = request_id or active[0]
            path = path or active[1]
        record.request_id = request_id or "-"
        record.request_path = path or "-"
        return True


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 view, but the page names the request id to quote when reporting it.
    500.html is self-contained (no static files, no user): it must render when the rest of
    the site cannot."""
    template = loader.get_template("500.html")
    return HttpResponseServerError(template.render({"request_id": of(request)}))
