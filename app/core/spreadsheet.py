"""Spreadsheet output: formula neutralising and streamed CSV/XLSX writers.

Every cell a spreadsheet may open goes through ``neutralise_cell``: a *text* cell beginning
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read by Excel,
LibreOffice or Google Sheets as a formula (CSV injection, OWASP), so it gets a leading
apostrophe. Numbers are never touched: callers pass numeric columns as numbers (``int``,
``Decimal``), so a ledger delta of ``-5`` stays the number -5. The rejected-rows CSV of the
imports uses the same function.

Both writers take rows of Python values and yield ``bytes`` chunks in constant memory:
CSV as it goes, XLSX (openpyxl's write-only mode, which keeps rows in a temporary file) once
the workbook is complete, read back from a temporary file in chunks.
"""

from __future__ import annotations

import csv
import io
import re
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
CSV_CONTENT_TYPE = "text/csv; charset=utf-8"
XLSX_CONTENT_TYPE = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
# One sheet holds 1,048,576 rows: the header plus this many; further rows go to a next sheet.
XLSX_SHEET_ROWS = 1_048_575
CHUNK_BYTES = 64 * 1024
# Characters XML 1.0 cannot carry (openpyxl refuses them): legacy text may hold them.
_XML_ILLEGAL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def neutralise_cell(value: Any) -> Any:
    """``value`` made safe to open in a spreadsheet: text beginning with a formula trigger
    (``= + - @``, tab, carriage return) gets a leading ``'``; anything else (numbers, dates,
    ``None``) is returned unchanged. Pass numbers as numbers, not as text."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


def _csv_text(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat() if value.tzinfo else value.isoformat()
    return neutralise_cell(value)


def csv_chunks(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Iterator[bytes]:
    """UTF-8 CSV (with a byte order mark, so Excel reads it as UTF-8; the project's own
    importers drop it), in chunks of about ``CHUNK_BYTES``. Datetimes are ISO 8601 in UTC,
    booleans ``true``/``false``, ``None`` an empty cell; text is neutralised."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write("\ufeff")
    writer.writerow([neutralise_cell(name) for name in header])
    for row in rows:
        writer.writerow([_csv_text(value) for value in row])
        if buffer.tell() >= CHUNK_BYTES:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, str):
        return neutralise_cell(_XML_ILLEGAL.sub("\ufffd", value))
    if isinstance(value, datetime) and value.tzinfo is not None:
        return value.astimezone(UTC).replace(tzinfo=None)  # Excel has no time zones: UTC
    if isinstance(value, (int, float, Decimal, date, bool)) or value is None:
        return value
    return neutralise_cell(str(value))


def xlsx_chunks(
    title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> Iterator[bytes]:
    """An XLSX workbook (one sheet ``title``, more if the rows exceed one sheet), built with
    openpyxl's write-only mode and yielded in chunks. Numbers and dates are typed cells
    (dates in UTC, without time zone); text is neutralised and never a formula; characters
    XML cannot hold become U+FFFD."""
    from openpyxl import Workbook  # here: only exports need it

    workbook = Workbook(write_only=True)
    header = [neutralise_cell(name) for name in header]
    sheet, used, number = None, XLSX_SHEET_ROWS, 0
    for row in rows:
        if used == XLSX_SHEET_ROWS:
            number += 1
            sheet = workbook.create_sheet(title if number == 1 else f"{title} ({number})")
            sheet.append(header)
            used = 0
        sheet.append([_xlsx_value(value) for value in row])
        used += 1
    if sheet is None:
        workbook.create_sheet(title).append(header)
    with tempfile.TemporaryFile() as fh:
        workbook.save(fh)
        fh.seek(0)
        while chunk := fh.read(CHUNK_BYTES):
            yield chunk
