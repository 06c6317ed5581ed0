"""Supplier files read through an import profile: CSV (text or a file) and XLSX, streamed.

``records`` yields ``(row number, cells)`` for every row of the file, numbered as the
supplier sees them (the first physical line of a CSV record, the sheet row of an XLSX);
``iter_feed`` skips the rows above the profile's header row, finds the mapped columns in
the header and yields, per data row, a ``ProductRow`` or a ``Rejection`` naming the row, the
supplier's column, the value and the reason. Memory stays flat: one record at a time
(openpyxl in read-only mode for XLSX).

Encodings and byte order marks: a UTF-8 byte order mark (EF BB BF) at the start of a file
is a signature, never data, and is dropped whatever the profile's encoding. With a cp1252
or Latin-1 profile the rest is decoded as the profile says (some tools prepend the mark to
any export); but if the text after it reads as UTF-8 (non-ASCII bytes that are valid
UTF-8), the profile is wrong for this file and the run fails saying so, instead of turning
"ü" into "Ã¼" silently.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import csv
import io
import queue
import tempfile
import threading
from array import array
from collections.abc import Iterator, Sequence
from datetime import date, datetime, time
from pathlib import Path
from typing import Any, TextIO

from pydantic import ValidationError

from ..core.feeds import CellError, FeedProfile
from ..core.inputs import strip_bom
from .rows import ProductRow, Rejection

BOM = codecs.BOM_UTF8
CANDIDATES = (";", ",", "\t", "|")
SNIFF_BYTES = 64 * 1024


class FeedError(Exception):
    """The file as a whole cannot be read (encoding, header, not an XLSX): never skippable."""

    def __init__(self, row: int, column: str, msg: str) -> None:
        self.row, self.column, self.msg = row, column, msg
        where = f"row {row}" + (f", column {column!r}" if column else "")
        super().__init__(f"{where}: {msg}")


# --- bytes and text ---------------------------------------------------------------------


def _reads_as_utf8(sample: bytes) -> bool:
    if not any(b >= 0x80 for b in sample):
        return False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def _bom_check(head: bytes, encoding: str) -> int:
    """How many leading bytes to skip (the UTF-8 BOM); ``FeedError`` if it contradicts."""
    if not head.startswith(BOM):
        return 0
    if encoding != "utf-8" and _reads_as_utf8(head[len(BOM) :]):
        raise FeedError(
            1,
            "",
            "the file starts with a UTF-8 byte order mark and its text is UTF-8, but the "
            f"profile's encoding is {encoding}: set the profile's encoding to utf-8",
        )
    return len(BOM)


def decode_bytes(data: bytes, encoding: str) -> str:
    """A whole uploaded file as text (the page's uploads), with the byte order mark rule."""
    skip = _bom_check(data[:SNIFF_BYTES], encoding)
    try:
        return data[skip:].decode(encoding)
    except UnicodeDecodeError as exc:
        line = data[: skip + exc.start].count(b"\n") + 1
        raise FeedError(line, "", f"the bytes are not {encoding} text (byte {exc.start})") from None


def open_text(profile: FeedProfile, text: str | None = None, path: str | None = None) -> TextIO:
    """A text stream of the feed: pasted text as is, a file decoded per the profile."""
    if path is None:
        return io.StringIO(strip_bom(text or ""), newline="")
    raw = Path(path).open("rb")  # noqa: SIM115 (handed to the wrapper, closed with it)
    skip = _bom_check(raw.read(SNIFF_BYTES), profile.encoding)
    raw.seek(skip)
    return io.TextIOWrapper(raw, encoding=profile.encoding, newline="")


def _undecodable_line(path: str, encoding: str) -> int:
    """The line of a file holding its first byte that ``encoding`` cannot decode (the text
    stream decodes ahead in blocks, so its error does not say)."""
    decoder = codecs.getincrementaldecoder(encoding)()
    line = 1
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 16), b""):
            try:
                decoder.decode(block)
            except UnicodeDecodeError as exc:
                return line + block[: exc.start].count(b"\n")
            line += block.count(b"\n")
    return line


def xlsx_bytes(value: str) -> bytes:
    """The bytes of an ``xlsx`` spec value (base64); ``ValueError`` if it is not."""
    try:
        data = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("xlsx is the file's bytes in base64") from None
    if not data.startswith(b"PK"):
        raise ValueError("xlsx is not an XLSX file (a ZIP archive)")
    return data


# --- records ----------------------------------------------------------------------------


def _delimiter(profile: FeedProfile, text: str | None, path: str | None) -> str:
    """The profile's delimiter, or the candidate found most often in the header row."""
    if profile.delimiter:
        return profile.delimiter
    with open_text(profile, text=text, path=path) as stream:
        try:
            lines = stream.read(SNIFF_BYTES).splitlines()
        except UnicodeDecodeError:
            lines = []
    header = lines[profile.header_row - 1] if len(lines) >= profile.header_row else ""
    counts = {c: header.count(c) for c in CANDIDATES}
    best = max(counts, key=lambda c: counts[c])
    return best if counts[best] else ","


def csv_records(
    profile: FeedProfile, text: str | None = None, path: str | None = None
) -> Iterator[tuple[int, list[Any]]]:
    delimiter = _delimiter(profile, text, path)
    with open_text(profile, text=text, path=path) as stream:
        reader = csv.reader(stream, delimiter=delimiter, quotechar=profile.quotechar)
        done = 0
        try:
            for values in reader:
                yield done + 1, values
                done = reader.line_num
        except UnicodeDecodeError as exc:
            line = _undecodable_line(path, profile.encoding) if path else done + 1
            raise FeedError(
                line, "", f"the bytes are not {profile.encoding} text ({exc.reason})"
            ) from None
        except csv.Error as exc:
            raise FeedError(done + 1, "", str(exc)) from None


class SpooledStrings(Sequence):
    """An XLSX shared-strings table kept in a temporary file, not in memory.

    openpyxl's read-only mode streams the sheet but loads the whole shared-strings table
    (every distinct text of the workbook) into a list: for a million products with their own
    SKU and name that is two million strings, several hundred MB. Here each string gets the
    text openpyxl would give it (``Text.content``: the plain ``<t>`` and the rich-text runs'
    ``<t>``, phonetic runs left out) and is appended to a file; memory holds one 8-byte
    offset per string.
    """

    def __init__(self, xml_source) -> None:
        from openpyxl.xml.constants import SHEET_MAIN_NS
        from openpyxl.xml.functions import iterparse

        self._file = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        self._offsets = array("q", [0])
        si, t, r = (f"{{{SHEET_MAIN_NS}}}{name}" for name in ("si", "t", "r"))
        write, offsets = self._file.write, self._offsets
        position = 0
        root = None
        for event, node in iterparse(xml_source, events=("start", "end")):
            if event == "start":
                if root is None:
                    root = node  # <sst>: emptied as strings are read, or it keeps them all
                continue
            if node.tag == si:
                parts = []
                for child in node:
                    if child.tag == t:
                        parts.append(child.text or "")
                    elif child.tag == r:
                        parts.extend(x.text or "" for x in child if x.tag == t)
                data = "".join(parts).replace("x005F_", "").encode()
                root.clear()
                write(data)
                position += len(data)
                offsets.append(position)

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, index):  # type: ignore[override]
        start, end = self._offsets[index], self._offsets[index + 1]
        self._file.seek(start)
        return self._file.read(end - start).decode()

    def close(self) -> None:
        self._file.close()


def _open_workbook(source):
    """openpyxl's ``load_workbook(read_only=True, data_only=True)``, its shared strings
    spooled to disk (``SpooledStrings``)."""
    from openpyxl.reader.excel import ExcelReader
    from openpyxl.xml.constants import SHARED_STRINGS

    class Reader(ExcelReader):
        def read_strings(self) -> None:
            part = self.package.find(SHARED_STRINGS)
            if part is not None:
                with self.archive.open(part.PartName[1:]) as src:
                    self.shared_strings = SpooledStrings(src)

    reader = Reader(source, read_only=True, data_only=True)
    reader.read()
    return reader.wb, reader.shared_strings


def _sheet_rows(book, worksheet, strings) -> Iterator[tuple[int, list[Any]]]:
    """``(sheet row number, values)`` of the rows the sheet holds, each row's cells parsed by
    openpyxl's own ``WorkSheetParser.parse_row`` (types, dates, shared strings).

    ``ReadOnlyWorksheet.iter_rows`` keeps every parsed ``<row>`` element (emptied, but still a
    child of ``<sheetData>``): about 200 bytes a row, 190 MB for a million. Here the rows are
    dropped from ``<sheetData>`` as they are read, so memory stays flat.
    """
    from openpyxl.worksheet._reader import DATA_TAG, ROW_TAG, WorkSheetParser
    from openpyxl.xml.functions import iterparse

    with book._archive.open(worksheet._worksheet_path) as src:
        parser = WorkSheetParser(
            src,
            strings,
            data_only=True,
            epoch=book.epoch,
            date_formats=book._date_formats,
            timedelta_formats=book._timedelta_formats,
        )
        sheet_data = None
        for event, element in iterparse(src, events=("start", "end")):
            if event == "start":
                if element.tag == DATA_TAG:
                    sheet_data = element
                continue
            if element.tag != ROW_TAG:
                continue
            number, cells = parser.parse_row(element)
            if sheet_data is not None:
                sheet_data.clear()
            parser.row_dimensions.clear()  # row heights etc.: not needed, would grow
            width = max((cell["column"] for cell in cells), default=0)
            values: list[Any] = [None] * width
            for cell in cells:
                values[cell["column"] - 1] = cell["value"]
            yield number, values


def xlsx_records(
    profile: FeedProfile, data: bytes | None = None, path: str | None = None, sheet: str = ""
) -> Iterator[tuple[int, list[Any]]]:
    """Rows of an XLSX sheet, streamed by openpyxl in read-only mode."""
    source = path if path is not None else io.BytesIO(data or b"")
    try:
        book, strings = _open_workbook(source)
    except Exception as exc:  # zipfile/openpyxl raise many types for a bad file
        raise FeedError(1, "", f"not a readable XLSX file ({type(exc).__name__})") from None
    try:
        name = sheet or profile.sheet
        if name and name not in book.sheetnames:
            raise FeedError(
                1, "", f"no sheet {name!r} (sheets: {', '.join(map(repr, book.sheetnames))})"
            )
        worksheet = book[name] if name else book.worksheets[0]
        yield from _sheet_rows(book, worksheet, strings)
    finally:
        book.close()
        if isinstance(strings, SpooledStrings):
            strings.close()


# --- read ahead ---------------------------------------------------------------------------

_DONE = object()


def read_ahead(items: Iterator[Any], batch: int = 500, depth: int = 8) -> Iterator[Any]:
    """``items``, produced by a thread of its own up to ``depth`` batches ahead.

    Parsing a file is pure Python; writing to the database mostly waits for it (SQLite's
    and psycopg's calls release the GIL). Reading ahead lets the two overlap on a second
    core; memory stays bounded (``batch * depth`` rows). An exception of the reader is
    raised here, in the consumer; a consumer that stops early stops the reader.
    """
    pipe: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: Any) -> bool:
        while not stop.is_set():
            try:
                pipe.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        chunk: list[Any] = []
        try:
            for item in items:
                chunk.append(item)
                if len(chunk) >= batch:
                    if not put(chunk):
                        return
                    chunk = []
            if chunk and not put(chunk):
                return
            put(_DONE)
        except BaseException as exc:  # handed to the consumer, raised there
            put(exc)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()

    thread = threading.Thread(target=produce, name="feed-reader", daemon=True)
    thread.start()
    try:
        while True:
            got = pipe.get()
            if got is _DONE:
                return
            if isinstance(got, BaseException):
                raise got
            yield from got
    finally:
        stop.set()
        thread.join()


# --- rows -------------------------------------------------------------------------------


def cell_text(value: Any) -> str:
    """A cell as the supplier would read it (for messages and the rejected-rows CSV)."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    return str(value)


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def iter_feed(
    profile: FeedProfile, records: Iterator[tuple[int, list[Any]]]
) -> Iterator[tuple[int, ProductRow | Rejection]]:
    """``(row number, ProductRow or Rejection)`` per data row; ``FeedError`` for the file."""
    header: list[str] | None = None
    header_number = profile.header_row
    for number, values in records:
        if number < header_number:
            continue
        if header is None:
            header = [cell_text(v).strip() for v in values]
            index = _header_index(profile, header, number)
            wanted = [(profile.columns[column], column, i) for column, i in index.items()]
            continue
        if all(_empty(v) for v in values):
            continue  # blank line or empty sheet row
        yield number, _row(profile, header, wanted, number, values)
    if header is None:
        raise FeedError(
            header_number, "", f"the file has no row {header_number} (the profile's header row)"
        )


def _header_index(profile: FeedProfile, header: list[str], number: int) -> dict[str, int]:
    """Supplier column -> position, for the mapped columns found in the header row."""
    position: dict[str, int] = {}
    for i, name in enumerate(header):
        if name in profile.columns:
            if name in position:
                raise FeedError(number, name, "this mapped column appears twice in the header row")
            position[name] = i
    missing = [
        f"{column!r} (-> {target})"
        for column, target in profile.columns.items()
        if column not in position and target not in profile.defaults
    ]
    if missing:
        found = ", ".join(repr(h) for h in header if h) or "nothing"
        raise FeedError(
            number,
            "",
            f"header row {number} lacks the mapped column(s) {', '.join(missing)}; found: {found}",
        )
    return position


def _row(
    profile: FeedProfile,
    header: list[str],
    wanted: list[tuple[str, str, int]],
    number: int,
    values: list[Any],
) -> ProductRow | Rejection:
    def rejected(column: str, value: Any, message: str) -> Rejection:
        raw = {
            (name or f"#{i + 1}"): cell_text(values[i]) if i < len(values) else ""
            for i, name in enumerate(header)
        }
        return Rejection(number, column, cell_text(value), message, raw)

    if len(values) > len(header) and any(not _empty(v) for v in values[len(header) :]):
        extra = next(v for v in values[len(header) :] if not _empty(v))
        return rejected(
            f"#{len(header) + 1}",
            extra,
            f"the row has {len(values)} values, the header row {len(header)}",
        )
    data: dict[str, Any] = {}
    cells: dict[str, Any] = {}
    for target, column, i in wanted:
        value = values[i] if i < len(values) else None
        if _empty(value):
            continue
        try:
            data[target] = profile.convert(target, value)
        except CellError as exc:
            return rejected(column, value, str(exc))
        cells[target] = value
    for target, value in profile.defaults.items():
        if target not in data:
            data[target] = profile.convert(target, value)
    column_of = profile.column_of
    for target in ("sku", "name", "price"):
        if target not in data:
            return rejected(column_of.get(target, target), "", "required: the cell is empty")
    try:
        return ProductRow.model_validate(data)  # every field's rule, in one call
    except ValidationError as exc:
        first = exc.errors()[0]
        target = str(first["loc"][0]) if first["loc"] else "sku"
        msg = first["msg"]
        msg = msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg
        return rejected(column_of.get(target, target), cells.get(target, data.get(target)), msg)
