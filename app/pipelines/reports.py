"""What a run's record shows: its diff as table rows and its rejected rows as a CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from typing import Any

from ..core.spreadsheet import safe_cell

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


def rejected_csv(result: dict[str, Any] | None) -> Iterator[str]:
    """The rejected rows as CSV lines: where and why, then the supplier's own columns, so
    the file can be fixed and fed again. Every cell is formula-safe (``safe_cell``)."""
    rows = rejected_rows(result)
    supplier: dict[str, None] = {}
    for row in rows:
        supplier.update(dict.fromkeys(row.get("values") or {}))
    buffer = io.StringIO()
    writer = csv.writer(buffer)

    def line(cells: list[Any]) -> str:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow([safe_cell(c) for c in cells])
        return buffer.getvalue()

    yield line([*REJECTED_COLUMNS, *supplier])
    for row in rows:
        values = row.get("values") or {}
        yield line([*(row.get(k) for k in REJECTED_COLUMNS), *(values.get(c) for c in supplier)])
