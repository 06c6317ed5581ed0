"""Keyset (cursor) pagination, shared by the API's lists and the back-office pages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def cursor_page(queryset, limit: int, cursor: Callable[[Any], Any]) -> dict:
    """The first ``limit`` rows of an ordered queryset, and the cursor of the last one
    (``cursor(row)``) when more follow: the client passes it back as ``after``."""
    items = list(queryset[: limit + 1])
    next_after = cursor(items[limit - 1]) if len(items) > limit else None
    return {"items": items[:limit], "next_after": next_after}
