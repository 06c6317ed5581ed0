"""Keyset (cursor) pagination, shared by the API's lists, the back-office pages and the
commands that walk a whole table."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def cursor_page(queryset, limit: int, cursor: Callable[[Any], Any]) -> dict:
    """The first ``limit`` rows of an ordered queryset, and the cursor of the last one
    (``cursor(row)``) when more follow: the client passes it back as ``after``."""
    items = list(queryset[: limit + 1])
    next_after = cursor(items[limit - 1]) if len(items) > limit else None
    return {"items": items[:limit], "next_after": next_after}


def keyset_chunks(
    queryset, *fields: str, size: int = 2000, key: str = "pk"
) -> Iterator[list[tuple]]:
    """``fields`` of every row, ``size`` rows per query in ``key`` order (``key`` must be
    unique: the next query starts after the last key seen). ``key`` is read as the first
    value unless ``fields`` already name it (then rows are exactly ``fields``).

    Memory stays bounded on every connection: behind a transaction pooler (PgBouncer)
    server-side cursors are off, and ``QuerySet.iterator()`` then fetches the whole result.
    The exports (``app.selectors.exports.iter_rows``, keyed on the dataset's key) and the
    commands that walk a table by primary key share this loop.
    """
    names = fields if key in fields else (key, *fields)
    key_index = names.index(key)
    rows = queryset.order_by(key).values_list(*names)
    last = None
    while True:
        chunk = list((rows if last is None else rows.filter(**{f"{key}__gt": last}))[:size])
        if chunk:
            yield chunk
        if len(chunk) < size:
            return
        last = chunk[-1][key_index]
