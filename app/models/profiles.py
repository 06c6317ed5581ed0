"""``ImportProfile``: a supplier file's column mapping and dialect, saved under a name."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db import models

from ..core.feeds import (
    DECIMAL_SEPARATORS,
    ENCODINGS,
    THOUSANDS_SEPARATORS,
    FeedProfile,
    feed_profile,
    profile_errors,
)

SETTINGS = (
    "name",
    "columns",
    "delimiter",
    "quotechar",
    "encoding",
    "decimal_separator",
    "thousands_separator",
    "header_row",
    "sheet",
    "defaults",
    "price_factor",
    "price_round_to",
    "clamp_stock",
)


class ImportProfile(models.Model):
    """How to read one supplier's file; ``upsert_products`` steps name it (``"profile"``).

    The rules live in ``app.core.feeds``; ``clean()`` (admin, page, API through the service)
    reports every problem by field.
    """

    name = models.CharField(max_length=100, unique=True)
    description = models.CharField(max_length=200, blank=True, default="")
    columns = models.JSONField(default=dict, help_text="supplier column -> product field")
    delimiter = models.CharField(
        max_length=1, blank=True, default="", help_text="empty: detected from the header row"
    )
    quotechar = models.CharField(max_length=1, default='"')
    encoding = models.CharField(max_length=10, default="utf-8", choices=[(e, e) for e in ENCODINGS])
    decimal_separator = models.CharField(
        max_length=1, default=".", choices=[(s, s) for s in DECIMAL_SEPARATORS]
    )
    thousands_separator = models.CharField(
        max_length=1,
        blank=True,
        default="",
        choices=[(s, repr(s) if s else "none") for s in THOUSANDS_SEPARATORS],
    )
    header_row = models.PositiveIntegerField(default=1, help_text="rows above it are skipped")
    sheet = models.CharField(
        max_length=100, blank=True, default="", help_text="XLSX: empty for the first sheet"
    )
    defaults = models.JSONField(default=dict, blank=True, help_text="product field -> value")
    price_factor = models.DecimalField(max_digits=12, decimal_places=6, default=1)
    price_round_to = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True, help_text="e.g. 0.05"
    )
    clamp_stock = models.BooleanField(default=False, help_text="negative stock becomes 0")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def settings(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in SETTINGS}

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        for item in profile_errors(self.settings()):
            errors.setdefault(str(item["loc"][0]), []).append(item["msg"])
        if errors:
            raise ValidationError(errors)

    def feed(self) -> FeedProfile:
        return feed_profile(self.settings())
