"""Spreadsheet output: formula neutralising and streamed CSV/XLSX writers.

Every cell a spreadsheet may open goes through ``neutralise_cell``: a *text* cell beginning
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return would be read by Excel,
LibreOffice or Google Sheets as a formula (CSV injection, OWASP), so it gets a leading
apostrophe. Numbers are never touched: callers pass numeric columns as numbers (``int``,
``Decimal``), so a ledger delta of ``-5`` stays the number -5. The rejected-rows CSV of the
imports uses the same function.

Both writers take rows of Python values and yield ``bytes`` chunks as the rows arrive, in
constant memory.
"""

from __future__ import annotations

import csv
import io
import re
import zipfile
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


# --- XLSX -----------------------------------------------------------------------------------
# A minimal SpreadsheetML package written straight into a zip stream: rows become XML as
# they come and leave as deflated bytes at once (first byte immediately, constant memory).
# openpyxl's write-only mode was the first version (commit 7dce517): without lxml it spent
# ~50 us per cell (1,000,000 products: minutes, past the request timeout); this is ~10x
# faster. Tests read the files back with openpyxl.

_NS = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
_REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
_PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
_EPOCH = datetime(1899, 12, 30)
_DATE_STYLE = 1  # cellXfs index of the date-time format below
_XML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;"})

_STYLES = (
    '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    f'<styleSheet xmlns="{_NS}">'
    '<numFmts count="1"><numFmt numFmtId="164" formatCode="yyyy-mm-dd hh:mm:ss"/></numFmts>'
    '<fonts count="1"><font><sz val="11"/><name val="Calibri"/></font></fonts>'
    '<fills count="2"><fill><patternFill patternType="none"/></fill>'
    '<fill><patternFill patternType="gray125"/></fill></fills>'
    '<borders count="1"><border><left/><right/><top/><bottom/><diagonal/></border></borders>'
    '<cellStyleXfs count="1"><xf numFmtId="0" fontId="0" fillId="0" borderId="0"/></cellStyleXfs>'
    '<cellXfs count="2"><xf numFmtId="0" fontId="0" fillId="0" borderId="0" xfId="0"/>'
    '<xf numFmtId="164" fontId="0" fillId="0" borderId="0" xfId="0" applyNumberFormat="1"/>'
    "</cellXfs>"
    '<cellStyles count="1"><cellStyle name="Normal" xfId="0" builtinId="0"/></cellStyles>'
    "</styleSheet>"
)


def _column_letters(index: int) -> str:
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def _xlsx_cell(ref: str, value: Any) -> str:
    """One ``<c>`` element: typed numbers, booleans and dates; text inline, neutralised."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return f'<c r="{ref}" t="b"><v>{int(value)}</v></c>'
    if isinstance(value, (int, Decimal, float)):
        if isinstance(value, Decimal) and not value.is_finite():
            value = str(value)
        else:
            return f'<c r="{ref}"><v>{value}</v></c>'
    if isinstance(value, datetime):
        if value.tzinfo is not None:  # Excel has no time zones: UTC
            value = value.astimezone(UTC).replace(tzinfo=None)
        serial = (value - _EPOCH).total_seconds() / 86400
        return f'<c r="{ref}" s="{_DATE_STYLE}"><v>{serial!r}</v></c>'
    if isinstance(value, date):
        serial = (value - _EPOCH.date()).days
        return f'<c r="{ref}" s="{_DATE_STYLE}"><v>{serial}</v></c>'
    text = neutralise_cell(_XML_ILLEGAL.sub("\ufffd", str(value))).translate(_XML_ESCAPES)
    space = ' xml:space="preserve"' if text[:1].isspace() or text[-1:].isspace() else ""
    return f'<c r="{ref}" t="inlineStr"><is><t{space}>{text}</t></is></c>'


class _Sink:
    """A write-only file for ``zipfile``: collects what is written until it is drained.
    It has no ``seek``, so zipfile streams (sizes in data descriptors)."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.position = 0

    def write(self, data: bytes) -> int:
        self.parts.append(bytes(data))
        self.position += len(data)
        return len(data)

    def tell(self) -> int:
        return self.position

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self.parts)
        self.parts.clear()
        return data


def xlsx_chunks(
    title: str, header: Sequence[str], rows: Iterable[Sequence[Any]]
) -> Iterator[bytes]:
    """An XLSX workbook (one sheet ``title``; more if the rows exceed one sheet), yielded in
    chunks while rows arrive. Numbers and dates are typed cells (dates in UTC, without time
    zone); text is neutralised and never a formula; characters XML cannot hold become
    U+FFFD."""
    sink = _Sink()
    archive = zipfile.ZipFile(sink, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1)
    header = list(header)
    letters = [_column_letters(i) for i in range(max(len(header), 1))]
    sheets = 0
    iterator = iter(rows)
    pending = next(iterator, None)
    while sheets == 0 or pending is not None:
        sheets += 1
        with archive.open(f"xl/worksheets/sheet{sheets}.xml", "w", force_zip64=True) as sheet:
            sheet.write(
                b'<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
                + f'<worksheet xmlns="{_NS}"><sheetData>'.encode()
            )
            lines = [_xlsx_row(1, header, letters)]
            number = 1
            while pending is not None and number <= XLSX_SHEET_ROWS:
                number += 1
                if len(letters) < len(pending):
                    letters += [_column_letters(i) for i in range(len(letters), len(pending))]
                lines.append(_xlsx_row(number, pending, letters))
                pending = next(iterator, None)
                if len(lines) >= 500:
                    sheet.write("".join(lines).encode())
                    lines.clear()
                    if sink.parts:
                        yield sink.drain()
            sheet.write(("".join(lines) + "</sheetData></worksheet>").encode())
        yield sink.drain()
    _xlsx_package(archive, title, sheets)
    archive.close()
    yield sink.drain()


def _xlsx_row(number: int, values: Sequence[Any], letters: list[str]) -> str:
    cells = "".join(_xlsx_cell(f"{letters[i]}{number}", value) for i, value in enumerate(values))
    return f'<row r="{number}">{cells}</row>'


def _xlsx_package(archive: zipfile.ZipFile, title: str, sheets: int) -> None:
    """The workbook, its relationships, styles and content types around the sheets."""
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n'
    safe = re.sub(r"[\[\]:*?/\\]", " ", title)[:25].strip() or "Sheet"
    names = [safe if n == 1 else f"{safe} ({n})" for n in range(1, sheets + 1)]
    sheet_list = "".join(
        f'<sheet name="{name.translate(_XML_ESCAPES)}" sheetId="{n}" r:id="rId{n}"/>'
        for n, name in enumerate(names, start=1)
    )
    archive.writestr(
        "xl/workbook.xml",
        f'{head}<workbook xmlns="{_NS}" xmlns:r="{_REL}"><sheets>{sheet_list}</sheets></workbook>',
    )
    rels = "".join(
        f'<Relationship Id="rId{n}" Type="{_REL}/worksheet" Target="worksheets/sheet{n}.xml"/>'
        for n in range(1, sheets + 1)
    )
    rels += f'<Relationship Id="rId{sheets + 1}" Type="{_REL}/styles" Target="styles.xml"/>'
    archive.writestr(
        "xl/_rels/workbook.xml.rels", f'{head}<Relationships xmlns="{_PKG}">{rels}</Relationships>'
    )
    archive.writestr("xl/styles.xml", _STYLES)
    archive.writestr(
        "_rels/.rels",
        f'{head}<Relationships xmlns="{_PKG}"><Relationship Id="rId1" '
        f'Type="{_REL}/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    )
    ml = "application/vnd.openxmlformats-officedocument.spreadsheetml"
    overrides = "".join(
        f'<Override PartName="/xl/worksheets/sheet{n}.xml" ContentType="{ml}.worksheet+xml"/>'
        for n in range(1, sheets + 1)
    )
    archive.writestr(
        "[Content_Types].xml",
        f'{head}<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.'
        'relationships+xml"/><Default Extension="xml" ContentType="application/xml"/>'
        f'<Override PartName="/xl/workbook.xml" ContentType="{ml}.sheet.main+xml"/>'
        f'<Override PartName="/xl/styles.xml" ContentType="{ml}.styles+xml"/>'
        f"{overrides}</Types>",
    )
