"""What a run's record shows: its diff as table rows and its rejected rows as a CSV."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from ..core.spreadsheet import CSV_CONTENT_TYPE, csv_chunks

__all__ = ["CSV_CONTENT_TYPE", "diff_rows", "rejected_csv", "rejected_rows"]

REJECTED_COLUMNS = ("row", "column", "value", "message")


def diff_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A preview's diff flattened: one ``{sku, action, field, before, after}`` per field."""
    rows = []
    for entry in (result or {}).get("diff") or []:
        for change in entry.get("changes") or [{"field": "", "before": None, "after": None}]:
            rows.append({"sku": entry["sku"], "action": entry["action"], **change})
    return rows


def rejected_rows(result: dict[str, Any] | None) -> list[dict[str, Any]]:
    return list((result or {}).get("rejected") or [])


def rejected_csv(result: dict[str, Any] | None) -> Iterator[bytes]:
    """The rejected rows as CSV: where and why, then the supplier's own columns, so the file
    can be fixed and fed again; written by the exports' ``csv_chunks`` (every text cell
    formula-safe, UTF-8 with a byte order mark)."""
    rows = rejected_rows(result)
    supplier: dict[str, None] = {}
    for row in rows:
        supplier.update(dict.fromkeys(row.get("values") or {}))
    return csv_chunks(
        [*REJECTED_COLUMNS, *supplier],
        (
            [
                *(row.get(k) for k in REJECTED_COLUMNS),
                *((row.get("values") or {}).get(c) for c in supplier),
            ]
            for row in rows
        ),
    )
