"""Write an XLSX as Excel does (text in the shared-strings table, a dimension), streamed.

openpyxl (3.1) writes every text as an inline string, which Excel never does; the feed
tests and the benchmark use this writer so that the reader meets real files' structure.
No Django here: the benchmark imports it before Django is set up.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from decimal import Decimal
from typing import IO, Any
from xml.sax.saxutils import escape

MAIN = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
REL = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
PKG = "http://schemas.openxmlformats.org/package/2006/relationships"
CT = "application/vnd.openxmlformats-officedocument.spreadsheetml"


def _column(index: int) -> str:
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(65 + rest) + name
    return name


def write_xlsx(
    target: str | IO[bytes], rows: Iterable[list[Any]], *, sheet: str = "Artikel", size: str = ""
) -> None:
    """One sheet of ``rows`` (str: shared string; int/float/Decimal: number; None: empty).
    ``size``, e.g. ``"A1:E1002"``, is written as the sheet's dimension when given."""
    strings: dict[str, int] = {}
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as z:
        with z.open("xl/worksheets/sheet1.xml", "w", force_zip64=True) as fh:
            dimension = f'<dimension ref="{size}"/>' if size else ""
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="{MAIN}">'.encode())
            fh.write(f"{dimension}<sheetData>".encode())
            for number, values in enumerate(rows, start=1):
                cells = []
                for i, value in enumerate(values):
                    ref = f"{_column(i)}{number}"
                    if value is None:
                        continue
                    if isinstance(value, str):
                        index = strings.setdefault(value, len(strings))
                        cells.append(f'<c r="{ref}" t="s"><v>{index}</v></c>')
                    elif isinstance(value, (int, float, Decimal)):
                        cells.append(f'<c r="{ref}"><v>{value}</v></c>')
                    else:
                        raise TypeError(f"unsupported cell {value!r}")
                fh.write(f'<row r="{number}">{"".join(cells)}</row>'.encode())
            fh.write(b"</sheetData></worksheet>")
        with z.open("xl/sharedStrings.xml", "w", force_zip64=True) as fh:
            fh.write(f'<?xml version="1.0" encoding="UTF-8"?><sst xmlns="{MAIN}">'.encode())
            for text in strings:
                fh.write(f'<si><t xml:space="preserve">{escape(text)}</t></si>'.encode())
            fh.write(b"</sst>")
        z.writestr(
            "[Content_Types].xml",
            '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/'
            'package/2006/content-types"><Default Extension="rels" ContentType="application/'
            'vnd.openxmlformats-package.relationships+xml"/><Default Extension="xml" '
            'ContentType="application/xml"/>'
            f'<Override PartName="/xl/workbook.xml" ContentType="{CT}.sheet.main+xml"/>'
            f'<Override PartName="/xl/worksheets/sheet1.xml" ContentType="{CT}.worksheet+xml"/>'
            f'<Override PartName="/xl/sharedStrings.xml" ContentType="{CT}.sharedStrings+xml"/>'
            "</Types>",
        )
        z.writestr(
            "_rels/.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
            f'<Relationship Id="rId1" Type="{REL}/officeDocument" Target="xl/workbook.xml"/>'
            "</Relationships>",
        )
        z.writestr(
            "xl/workbook.xml",
            f'<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="{MAIN}" xmlns:r="{REL}">'
            f'<sheets><sheet name="{escape(sheet)}" sheetId="1" r:id="rId1"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            f'<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="{PKG}">'
            f'<Relationship Id="rId1" Type="{REL}/worksheet" Target="worksheets/sheet1.xml"/>'
            f'<Relationship Id="rId2" Type="{REL}/sharedStrings" Target="sharedStrings.xml"/>'
            "</Relationships>",
        )
