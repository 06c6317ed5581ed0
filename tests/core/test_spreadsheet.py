"""Formula neutralising and the streamed CSV/XLSX writers, read back with the csv module and
openpyxl (what a spreadsheet would see)."""

import csv
import io
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from openpyxl import load_workbook

from app.core import spreadsheet
from app.core.spreadsheet import csv_chunks, neutralise_cell, xlsx_chunks

TRIGGERS = ["=1+2", "+1", "-2+3", "@SUM(A1)", "\tx", "\rx", '=HYPERLINK("http://x","y")']


@pytest.mark.parametrize("text", TRIGGERS)
def test_text_beginning_with_a_trigger_gets_an_apostrophe(text):
    assert neutralise_cell(text) == "'" + text


@pytest.mark.parametrize(
    "value", ["plain", "a=b", "", " =x", "'already", 0, -5, Decimal("-1.50"), None, 2.5]
)
def test_other_values_are_unchanged(value):
    assert neutralise_cell(value) == value


def read_csv(chunks) -> list[list[str]]:
    data = b"".join(chunks)
    assert data.startswith(b"\xef\xbb\xbf")  # BOM: Excel reads UTF-8
    return list(csv.reader(io.StringIO(data.decode("utf-8-sig"), newline="")))


def read_xlsx(chunks):
    return load_workbook(io.BytesIO(b"".join(chunks)))


ROWS = [
    ("=cmd|' /C calc'!A0", -5, Decimal("-1.25"), datetime(2026, 12, 4, 10, 30, tzinfo=UTC), True),
    ('line\nbreak, "quoted"', 7, Decimal("3.00"), None, False),
]
HEADER = ["text", "delta", "price", "at", "flag"]


def test_csv_neutralises_text_and_keeps_numbers():
    rows = read_csv(csv_chunks(HEADER, ROWS))
    assert rows[0] == HEADER
    assert rows[1] == [
        "'=cmd|' /C calc'!A0",
        "-5",
        "-1.25",
        "2026-12-04T10:30:00+00:00",
        "true",
    ]
    assert rows[2] == ['line\nbreak, "quoted"', "7", "3.00", "", "false"]


def test_xlsx_neutralises_text_and_keeps_typed_numbers_and_dates():
    sheet = read_xlsx(xlsx_chunks("data", HEADER, ROWS))["data"]
    header, first, second = (list(row) for row in sheet.iter_rows())
    assert [c.value for c in header] == HEADER
    assert first[0].value == "'=cmd|' /C calc'!A0" and first[0].data_type == "s"
    assert first[1].value == -5 and first[1].data_type == "n"
    assert first[2].value == Decimal("-1.25") or first[2].value == -1.25
    assert first[2].data_type == "n"
    assert first[3].value == datetime(2026, 12, 4, 10, 30)  # UTC, without zone
    assert first[4].value is True
    assert second[3].value is None
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_xlsx_replaces_characters_xml_cannot_hold():
    sheet = read_xlsx(xlsx_chunks("data", ["name"], [("bell\x07tab\tok",)]))["data"]
    assert sheet["A2"].value == "bell\ufffdtab\tok"


def test_xlsx_continues_on_a_new_sheet_when_one_is_full(monkeypatch):
    monkeypatch.setattr(spreadsheet, "XLSX_SHEET_ROWS", 3)
    book = read_xlsx(xlsx_chunks("rows", ["n"], [(i,) for i in range(7)]))
    assert book.sheetnames == ["rows", "rows (2)", "rows (3)"]
    values = [[c.value for c in row] for name in book.sheetnames for row in book[name].iter_rows()]
    assert values == [["n"], [0], [1], [2], ["n"], [3], [4], [5], ["n"], [6]]


def test_empty_exports_have_the_header():
    assert read_csv(csv_chunks(HEADER, [])) == [HEADER]
    assert [
        c.value for c in next(read_xlsx(xlsx_chunks("e", HEADER, []))["e"].iter_rows())
    ] == HEADER


def test_csv_is_produced_in_chunks_as_rows_come():
    produced = []

    def rows():
        for i in range(20000):
            produced.append(i)
            yield (f"row {i}", i)

    chunks = csv_chunks(["a", "b"], rows())
    first = next(chunks)
    assert len(first) >= spreadsheet.CHUNK_BYTES and len(produced) < 20000
    assert len(read_csv([first, *chunks])) == 20001


def test_xlsx_text_is_escaped_and_spaces_kept_and_dates_are_dates():
    rows = [("a & b < c > d", "  padded  ", datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC))]
    sheet = read_xlsx(xlsx_chunks("x", ["t", "s", "at"], rows))["x"]
    assert sheet["A2"].value == "a & b < c > d"
    assert sheet["B2"].value == "  padded  "
    assert sheet["C2"].is_date and sheet["C2"].value == datetime(2026, 1, 2, 3, 4, 5)


def test_xlsx_streams_while_rows_arrive():
    produced = []

    def rows():
        for i in range(200_000):
            produced.append(i)
            yield (f"row {i}", i)

    chunks = xlsx_chunks("s", ["a", "b"], rows())
    next(chunks)
    assert len(produced) < 200_000  # the first bytes leave before the last row is read
