"""Product rows for ``upsert_products``: one model validates JSON rows and CSV rows alike.

CSV is read as a stream (``csv.reader`` over a file or string buffer), so memory stays flat
however many rows a feed has; a bad cell, a malformed line or a field over the csv module's
size limit fails the step with its line and column. A leading byte order mark is dropped
wherever CSV text enters (``open_csv``), pasted or uploaded alike.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO

from pydantic import ValidationError

from ..core.inputs import strip_bom
from .base import Name, Price, Sku, Stock, Strict, Threshold

REQUIRED_COLUMNS = ("sku", "name", "price")
OPTIONAL_COLUMNS = ("stock", "low_stock_threshold")


class ProductRow(Strict):
    sku: Sku
    name: Name
    price: Price
    stock: Stock | None = None
    low_stock_threshold: Threshold | None = None


class RowError(Exception):
    def __init__(self, line: int, column: str, msg: str) -> None:
        self.line, self.column, self.msg = line, column, msg
        super().__init__(f"line {line}, column {column}: {msg}")


class _RecordLines:
    """Feeds ``csv.reader`` line by line and keeps the raw lines of the current record, so a
    ``csv.Error`` (a field over the size limit) can be located by column."""

    def __init__(self, stream: TextIO) -> None:
        self._lines = iter(stream)
        self.record: list[str] = []

    def __iter__(self) -> _RecordLines:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        self.record.append(line)
        return line


def _oversized_field(record: str, limit: int) -> int:
    """Index of the first field of a raw CSV record (excel dialect) longer than ``limit``."""
    index = size = 0
    quoted = False
    i = 0
    while i < len(record):
        ch = record[i]
        if quoted:
            if ch == '"' and record[i + 1 : i + 2] == '"':
                size += 1
                i += 1
            elif ch == '"':
                quoted = False
            else:
                size += 1
        elif ch == '"' and size == 0:
            quoted = True
        elif ch == ",":
            index, size = index + 1, 0
        elif ch not in "\r\n":
            size += 1
        if size > limit:
            break
        i += 1
    return index


def _csv_error(exc: csv.Error, reader, lines: _RecordLines, header: list[str]) -> RowError:
    index = _oversized_field("".join(lines.record), csv.field_size_limit())
    column = header[index] if index < len(header) else f"#{index + 1}"
    return RowError(reader.line_num, column, str(exc))


def _records(stream: TextIO) -> Iterator[tuple[int, list[str], list[str]]]:
    """``(line number, values, header)`` per record; the header is the first record."""
    lines = _RecordLines(stream)
    reader = csv.reader(lines)
    header: list[str] | None = None
    while True:
        lines.record = []
        try:
            values = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise _csv_error(exc, reader, lines, header or []) from None
        if header is None:
            header = [c.strip() for c in values]
        yield reader.line_num, values, header


def header_errors(header: list[str] | None) -> list[str]:
    """What is wrong with a CSV header line (empty list when it is fine)."""
    if not header:
        return [
            "CSV is empty: expected a header line with sku,name,price[,stock,low_stock_threshold]"
        ]
    columns = [c.strip() for c in header]
    errors = [f"missing column {c!r}" for c in REQUIRED_COLUMNS if c not in columns]
    known = REQUIRED_COLUMNS + OPTIONAL_COLUMNS
    errors += [
        f"unknown column {c!r} (known: {', '.join(known)})" for c in columns if c not in known
    ]
    errors += [f"duplicate column {c!r}" for c in dict.fromkeys(columns) if columns.count(c) > 1]
    return errors


def read_header(stream: TextIO) -> list[str] | None:
    """The header line (``None`` for empty input); ``RowError`` if it cannot be read."""
    for _line, values, _header in _records(stream):
        return values
    return None


def open_csv(text: str | None = None, path: str | None = None) -> TextIO:
    if path is not None:
        return Path(path).open(newline="", encoding="utf-8-sig")
    return io.StringIO(strip_bom(text or ""), newline="")


def count_data_lines(text: str | None = None, path: str | None = None) -> int:
    """Data rows of a CSV, for progress (counts line breaks; quoted newlines over-count)."""
    if path is not None:
        lines = 0
        with Path(path).open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                lines += block.count(b"\n")
        return max(lines - 1, 0)
    text = text or ""
    return max(text.count("\n") - (1 if text.endswith("\n") else 0), 0)


def iter_csv_rows(stream: TextIO) -> Iterator[tuple[int, ProductRow]]:
    """Yield ``(line number, row)``; raise ``RowError`` at the first bad cell or line."""
    records = _records(stream)
    first = next(records, None)
    if first is None:
        return
    header = first[2]
    width = len(header)
    for line, values, _header in records:
        if not values or (len(values) == 1 and not values[0].strip()):
            continue  # blank line
        if len(values) != width:
            raise RowError(line, "*", f"expected {width} values, found {len(values)}")
        data = {
            k: v
            for k, v in zip(header, values, strict=True)
            if v.strip() != "" or k in REQUIRED_COLUMNS
        }
        try:
            yield line, ProductRow.model_validate(data)
        except ValidationError as exc:
            first_error = exc.errors()[0]
            column = str(first_error["loc"][0]) if first_error["loc"] else "*"
            raise RowError(
                line, column, f"{first_error['msg']} (got {data.get(column)!r})"
            ) from None
