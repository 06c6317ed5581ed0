"""Supplier files the feed tests generate (nothing binary is checked in)."""

from __future__ import annotations

import base64
import io
from decimal import Decimal

from app.models import ImportProfile
from tests.feeds.excel import write_xlsx

BOM = b"\xef\xbb\xbf"

GERMAN = {
    "name": "lieferant-de",
    "columns": {
        "Artikelnummer": "sku",
        "Bezeichnung": "name",
        "VK-Preis": "price",
        "Bestand": "stock",
    },
    "delimiter": ";",
    "encoding": "cp1252",
    "decimal_separator": ",",
    "thousands_separator": ".",
    "header_row": 3,
}


def german_profile(**changes) -> ImportProfile:
    profile = ImportProfile(**{**GERMAN, **changes})
    profile.full_clean()
    profile.save()
    return profile


def german_csv_text() -> str:
    """Two junk rows, a header on row 3, semicolons, decimal commas, thousands dots, a quoted
    name with a line break and a quoted field holding the delimiter; an unmapped column."""
    return (
        "Preisliste Müller GmbH;;;;\r\n"
        "Stand: 01.12.2026;;;;\r\n"
        "Artikelnummer;Bezeichnung;VK-Preis;Bestand;Lieferzeit\r\n"
        "DE-1;Schraube M4;1.234,50;1.000;2 Tage\r\n"
        'DE-2;"Dübel\r\n8 mm; grau";0,99;12;\r\n'
        "DE-3;Mutter Größe 5;12;0;sofort\r\n"
    )


def german_cp1252_bytes(bom: bool = True) -> bytes:
    data = german_csv_text().encode("cp1252")
    return (BOM + data) if bom else data


def xlsx_bytes(rows: list[list], title: str | None = "Lagerliste Dezember") -> bytes:
    """An XLSX as Excel writes it (``tests.feeds.excel``), sheet "Artikel"."""
    out = io.BytesIO()
    write_xlsx(out, ([[title]] if title is not None else []) + rows)
    return out.getvalue()


XLSX_PROFILE = {
    "name": "lieferant-xlsx",
    "columns": {"Art.-Nr.": "sku", "Artikel": "name", "Preis": "price", "Menge": "stock"},
    "decimal_separator": ",",
    "header_row": 2,
}


def xlsx_profile(**changes) -> ImportProfile:
    profile = ImportProfile(**{**XLSX_PROFILE, **changes})
    profile.full_clean()
    profile.save()
    return profile


def mixed_xlsx() -> bytes:
    """A title row, then a header; numbers stored as numbers and as text, empty cells, an
    integral float, a SKU stored as a number, and one bad row (row 6: price 'n/a')."""
    return xlsx_bytes(
        [
            ["Art.-Nr.", "Artikel", "Preis", "Menge", "Bemerkung"],
            ["X-1", "Kabel", 4.5, 10, None],  # row 3: numbers
            ["X-2", "Stecker", "3,20", "7", "Text-Zahlen"],  # row 4: numbers stored as text
            [100234, "Adapter", 12, None, None],  # row 5: numeric SKU, empty stock
            ["X-4", "Lampe", "n/a", 3, None],  # row 6: bad price
            [None, None, None, None, None],  # row 7: empty row, skipped
            ["X-5", "Schalter", Decimal("2.5"), 4.0, None],  # row 8
        ]
    )


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def thousand_rows_with_three_bad() -> tuple[str, list[int]]:
    """1,000 data rows (plain profile-less header names mapped 1:1); rows 101, 502 and 903
    of the file are bad (price, stock, sku). Returns the CSV and the bad row numbers."""
    lines = ["sku,name,price,stock"]
    bad = {101: "B-{i},Bad price,abc,1", 502: "B-{i},Bad stock,1.00,-3", 903: ",No sku,1.00,1"}
    for row in range(2, 1002):
        i = row - 1
        lines.append(bad[row].format(i=i) if row in bad else f"T-{i},Item {i},{i}.50,{i % 50 + 10}")
    return "\n".join(lines) + "\n", sorted(bad)
