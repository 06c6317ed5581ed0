"""Product rows for ``upsert_products``: one model validates JSON rows and CSV rows alike.

CSV is read as a stream (``csv.reader`` over a file or string buffer), so memory stays flat
however many rows a feed has; a bad cell, a malformed line or a field over the csv module's
size limit fails the step with its line and column. A leading byte order mark is dropped
wherever CSV text enters (``open_csv``), pasted or uploaded alike.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from ..core.domain import _FORBIDDEN_IN_TEXT, _PLAIN_SKU, CENT, MAX_STOCK, NAME_MAX_LENGTH
from ..core.inputs import strip_bom
from .base import Name, Price, Sku, Stock, Strict, Threshold

REQUIRED_COLUMNS = ("sku", "name", "price")
OPTIONAL_COLUMNS = ("stock", "low_stock_threshold")
KNOWN_COLUMNS = REQUIRED_COLUMNS + OPTIONAL_COLUMNS


class ProductRow(Strict):
    sku: Sku
    name: Name
    price: Price
    stock: Stock | None = None
    low_stock_threshold: Threshold | None = None

    def values(self) -> RowValues:
        return (self.sku, self.name, self.price, self.stock, self.low_stock_threshold)


# A validated row as a tuple: (sku, name, price, stock or None, threshold or None). The SQL
# route of ``upsert_products`` stages these, without a model instance per row.
RowValues = tuple[str, str, Decimal, int | None, int | None]

# What ``_fast_values`` accepts without the model: a price of up to 10 digits and 2 decimals,
# a count of up to 10 digits (ASCII only; anything else goes through the model).
_PRICE_TEXT = re.compile(r"[0-9]{1,10}(?:\.[0-9]{1,2})?")
_COUNT_TEXT = re.compile(r"[0-9]{1,10}")


def _fast_values(at: tuple[int, int, int, int, int], values: list[str]) -> RowValues | None:
    """The row's values when every cell is of the common, plainly valid form (the same
    values ``ProductRow`` would give it), else ``None``: the caller then validates the row
    with the model, which accepts what it accepts and words the error. ``at``: the columns'
    positions (``-1``: no such column)."""
    sku, name, price = values[at[0]], values[at[1]], values[at[2]]
    if not _PLAIN_SKU.fullmatch(sku) or sku in (".", ".."):
        return None
    if len(name) > NAME_MAX_LENGTH or not name.strip() or _FORBIDDEN_IN_TEXT.search(name):
        return None
    if not _PRICE_TEXT.fullmatch(price):
        return None
    counts: list[int | None] = [None, None]
    for i in (0, 1):
        position = at[3 + i]
        if position < 0:
            continue
        text = values[position]
        if not text.strip():
            continue  # an empty optional cell: not given
        if not _COUNT_TEXT.fullmatch(text):
            return None
        count = int(text)
        if count > MAX_STOCK:
            return None
        counts[i] = count
    return sku, name, Decimal(price).quantize(CENT), counts[0], counts[1]


# ``_fast_batch``: a column of cells joined by line breaks (no cell of the common form holds
# one), each cell of the form ``_fast_values`` accepts; a count cell may be empty.
_SKU_COLUMN = re.compile(rf"(?:(?!\.\.?\n)(?:{_PLAIN_SKU.pattern})\n)*")
_PRICE_COLUMN = re.compile(rf"(?:(?:{_PRICE_TEXT.pattern})\n)*")
# Prices of that form written with two decimals: each already is its ``Decimal`` to the cent.
_CENTS_COLUMN = re.compile(r"(?:[0-9]{1,10}\.[0-9]{2}\n)*")
_COUNT_COLUMN = re.compile(rf"(?:(?:{_COUNT_TEXT.pattern})?\n)*")
# Lines read and rows checked together by ``iter_csv_blocks`` (what it reads ahead of the
# rows it yields).
FAST_BATCH = 1000


def _column_matches(pattern: re.Pattern[str], cells: Sequence[str]) -> bool:
    """Whether ``pattern`` matches the cells joined by line breaks, each ended by one: a
    cell holding a line break itself ("A\nB") would read as two cells, so it fails here."""
    text = "\n".join(cells) + "\n"
    return text.count("\n") == len(cells) and pattern.fullmatch(text) is not None


def _fast_batch(
    at: tuple[int, int, int, int, int], rows: list[list[str]]
) -> list[RowValues] | None:
    """``_fast_values`` of every row of ``rows`` (all of the table's width), when every
    one is of the common form, checked column by column (one regular expression over each
    column, not several per row); ``None`` when some row is not: the caller then checks
    them one by one. Accepts no row ``_fast_values`` refuses, and gives the same values."""
    columns = list(zip(*rows, strict=True))
    skus, names, prices = columns[at[0]], columns[at[1]], columns[at[2]]
    if not _column_matches(_SKU_COLUMN, skus):
        return None
    if (
        max(map(len, names)) > NAME_MAX_LENGTH
        or not all(map(str.strip, names))
        or _FORBIDDEN_IN_TEXT.search("".join(names))
    ):
        return None
    if _column_matches(_CENTS_COLUMN, prices):
        amounts = list(map(Decimal, prices))  # the same as quantized: two decimals already
    elif _column_matches(_PRICE_COLUMN, prices):
        quantize = Decimal.quantize
        amounts = [quantize(Decimal(p), CENT) for p in prices]
    else:
        return None
    counts: list[Any] = []
    for position in at[3:]:
        if position < 0:
            counts.append([None] * len(rows))
            continue
        cells = columns[position]
        if not _column_matches(_COUNT_COLUMN, cells):
            return None  # a blank cell of spaces, a sign...: row by row
        if all(cells):  # no empty cell
            found = list(map(int, cells))
            top = max(found)
        else:
            found = [int(cell) if cell else None for cell in cells]
            top = max((n for n in found if n is not None), default=0)
        if top > MAX_STOCK:
            return None
        counts.append(found)
    return list(zip(skus, names, amounts, counts[0], counts[1], strict=True))


@dataclass
class Rejection:
    """A data row that cannot become a product: where, which cell, and why."""

    row: int
    column: str
    value: str
    message: str
    values: dict[str, str] = field(default_factory=dict)

    def as_dict(self, step: int) -> dict[str, Any]:
        return {
            "step": step,
            "row": self.row,
            "column": self.column,
            "value": self.value,
            "message": self.message,
            "values": self.values,
        }

    def __str__(self) -> str:
        return f"row {self.row}, column {self.column!r}: {self.message} (got {self.value!r})"


class RowError(Exception):
    def __init__(self, line: int, column: str, msg: str) -> None:
        self.line, self.column, self.msg = line, column, msg
        super().__init__(f"line {line}, column {column}: {msg}")


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


def _csv_error(exc: csv.Error, stream: TextIO, after: int, upto: int, header: list[str]):
    """A ``csv.Error`` (a field over the size limit) as a ``RowError`` with its column: the
    raw lines of the failing record (``after`` + 1 .. ``upto``) are read again to find it."""
    stream.seek(0)
    record = "".join(itertools.islice(stream, after, upto))
    index = _oversized_field(record, csv.field_size_limit())
    column = header[index] if index < len(header) else f"#{index + 1}"
    return RowError(upto, column, str(exc))


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
    reader = csv.reader(stream)
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise _csv_error(exc, stream, 0, reader.line_num, []) from None


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


def iter_csv_rows(
    stream: TextIO, skip: Callable[[Rejection], None] | None = None, *, as_values: bool = False
) -> Iterator[tuple[int, Any]]:
    """Yield ``(line number, row)``; raise ``RowError`` at the first bad cell or line, or,
    given ``skip``, hand it each bad row as a ``Rejection`` and go on (a malformed CSV
    record still raises: the rows after it cannot be trusted). ``iter_csv_blocks``, a row
    at a time."""
    for block in iter_csv_blocks(stream, skip, as_values=as_values):
        yield from block


def iter_csv_blocks(
    stream: TextIO, skip: Callable[[Rejection], None] | None = None, *, as_values: bool = False
) -> Iterator[list[tuple[int, Any]]]:
    """``iter_csv_rows``'s rows, a list of ``(line number, row)`` at a time (the lists
    come, the rows are handed to ``skip`` and errors are raised in the same order as a
    row at a time).

    ``as_values``: each row as ``RowValues`` instead of a ``ProductRow``; rows of the common
    form are then checked without building the model, ``FAST_BATCH`` rows at a time
    (``_fast_batch``, else ``_fast_values`` row by row), the others as always, so the same
    rows pass and fail with the same errors, in the same order. When the header names only
    known columns, each once, ``FAST_BATCH`` lines at a time are first read as a whole
    (``_whole_block``): a block of one record per line, each of the common form, is taken
    as it is, without a Python step per row; any other block is read record by record."""
    reader = csv.reader(stream)
    header: list[str] = []
    done = 0  # lines read up to the end of the last whole record
    try:
        header = [c.strip() for c in next(reader, None) or []]
        width = len(header)
        done = reader.line_num
        fast = as_values and all(c in header for c in REQUIRED_COLUMNS)
        at: tuple[int, int, int, int, int] = tuple(  # type: ignore[assignment]
            header.index(c) if c in header else -1 for c in REQUIRED_COLUMNS + OPTIONAL_COLUMNS
        )
    except csv.Error as exc:
        raise _csv_error(exc, stream, done, reader.line_num, header) from None
    # Whole blocks only when ``_fast_batch`` checks every cell of a row (no column it
    # does not know of, none twice): a record spanning lines has a cell holding a line
    # break, which it refuses.
    whole = fast and len(set(header)) == width and set(header) <= set(KNOWN_COLUMNS)

    def checked(start: int, line: int, values: list[str]) -> list[tuple[int, Any]]:
        """One row of the table's width: returned, or handed to ``skip``, or raised."""
        if fast:
            found = _fast_values(at, values)
            if found is not None:
                return [(line, found)]
        data = {
            k: v
            for k, v in zip(header, values, strict=True)
            if v.strip() != "" or k in REQUIRED_COLUMNS
        }
        try:
            row = ProductRow.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            column = str(first["loc"][0]) if first["loc"] else "*"
            if skip is None:
                msg = f"{first['msg']} (got {data.get(column)!r})"
                raise RowError(line, column, msg) from None
            value = str(data.get(column, ""))
            skip(Rejection(start, column, value, first["msg"], _raw(header, values)))
            return []
        return [(line, row.values() if as_values else row)]

    # (first line, last line, values) of rows read but not yet checked (``fast`` only)
    pending: list[tuple[int, int, list[str]]] = []

    def flush() -> Iterator[list[tuple[int, Any]]]:
        rows = _fast_batch(at, [values for _, _, values in pending])
        if rows is not None:
            yield [(line, row) for (_, line, _), row in zip(pending, rows, strict=True)]
        else:
            for start, line, values in pending:
                found = checked(start, line, values)
                if found:
                    yield found
        pending.clear()

    def records(lines: Iterator[str], stop: int | None) -> Iterator[list[tuple[int, Any]]]:
        """The records read from ``lines`` (which follow line ``done``), record by record,
        until one ends at or past their line ``stop`` (``None``: to the end)."""
        nonlocal done
        reader = csv.reader(lines)
        offset = done
        try:
            while stop is None or reader.line_num < stop:
                values = next(reader, None)
                if values is None:
                    break
                line = offset + reader.line_num
                if not values or (len(values) == 1 and not values[0].strip()):
                    done = line
                    continue  # blank line
                start = done + 1
                done = line
                if fast and len(values) == width:
                    pending.append((start, line, values))
                    if len(pending) >= FAST_BATCH:
                        yield from flush()
                    continue
                if pending:
                    yield from flush()
                if len(values) != width:
                    msg = f"expected {width} values, found {len(values)}"
                    if skip is None:
                        raise RowError(line, "*", msg)
                    skip(Rejection(start, "*", "", msg, _raw(header, values)))
                    continue
                found = checked(start, line, values)
                if found:
                    yield found
        except csv.Error as exc:
            error = _csv_error(exc, stream, done, offset + reader.line_num, header)
            if pending:  # the rows before the malformed record come first, their errors too
                yield from flush()
            raise error from None
        if pending:
            yield from flush()

    if not whole:
        yield from records(stream, None)
        return
    while block := list(itertools.islice(stream, FAST_BATCH)):
        rows = _whole_block(at, width, block)
        if rows is not None:
            yield list(zip(range(done + 1, done + 1 + len(block)), rows, strict=True))
            done += len(block)
        else:  # record by record from the block's first line (a record may go on past it)
            yield from records(itertools.chain(block, stream), len(block))


def _whole_block(
    at: tuple[int, int, int, int, int], width: int, lines: list[str]
) -> list[RowValues] | None:
    """``_fast_batch`` of the records of ``lines`` when each line is one record of the
    table's width (no blank line) and every row is of the common form; else ``None``
    (also for a record ``csv`` cannot read: the caller reads it again, record by record,
    and reports it there). A record going on past a line, even past the last one, has a
    cell holding a line break: refused by ``_fast_batch``."""
    try:
        rows = list(csv.reader(lines))
    except csv.Error:
        return None
    if len(rows) != len(lines) or set(map(len, rows)) != {width}:
        return None
    return _fast_batch(at, rows)


def _raw(header: list[str], values: list[str]) -> dict[str, str]:
    return {
        (header[i] if i < len(header) and header[i] else f"#{i + 1}"): value
        for i, value in enumerate(values)
    }
