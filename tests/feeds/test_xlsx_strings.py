"""The spooled shared-strings table reads what openpyxl's own table reads."""

import io

from openpyxl import load_workbook

from app.pipelines.feeds import SpooledStrings, _open_workbook

SST = (
    b'<?xml version="1.0" encoding="UTF-8"?>'
    b'<sst xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
    b"<si><t>plain</t></si>"
    b'<si><t xml:space="preserve"> spaced </t></si>'
    b"<si><r><t>rich </t></r><r><rPr><b/></rPr><t>text</t></r></si>"
    b'<si><t>base</t><rPh sb="0" eb="1"><t>PHONETIC</t></rPh></si>'
    b"<si><t/></si>"
    b"<si><t>Gr\xc3\xb6\xc3\x9fe &amp; x005F_y</t></si>"
    b"</sst>"
)


def test_spooled_strings_match_openpyxl():
    from openpyxl.reader.strings import read_string_table

    expected = read_string_table(io.BytesIO(SST))
    spooled = SpooledStrings(io.BytesIO(SST))
    try:
        assert [spooled[i] for i in range(len(spooled))] == expected
        assert expected[2] == "rich text" and expected[3] == "base"
    finally:
        spooled.close()


def test_workbook_cells_match_openpyxl():
    """Our row loop (spooled strings, rows dropped as read) yields openpyxl's values."""
    from app.core.feeds import feed_profile
    from app.pipelines.feeds import xlsx_records
    from tests.feeds.fixtures import XLSX_PROFILE, mixed_xlsx

    data = mixed_xlsx()
    ours = {
        number: values for number, values in xlsx_records(feed_profile(XLSX_PROFILE), data=data)
    }
    theirs = load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        for number, row in enumerate(theirs.worksheets[0].iter_rows(values_only=True), start=1):
            values = list(row)
            while values and values[-1] is None:
                values.pop()
            assert ours.get(number, []) == values, number
        assert len(ours) >= 7
    finally:
        theirs.close()
    book, strings = _open_workbook(io.BytesIO(data))
    assert isinstance(strings, SpooledStrings)  # the fixture has a shared-strings table
    book.close()
    strings.close()


def test_inline_strings_written_by_openpyxl_are_read_too():
    from openpyxl import Workbook

    from app.core.feeds import feed_profile
    from app.pipelines.feeds import iter_feed, xlsx_records

    book = Workbook(write_only=True)
    sheet = book.create_sheet("S")
    sheet.append(["sku", "name", "price"])
    sheet.append(["A-1", "Inline", "1,50"])
    out = io.BytesIO()
    book.save(out)
    profile = feed_profile(
        {
            "name": "i",
            "columns": {"sku": "sku", "name": "name", "price": "price"},
            "decimal_separator": ",",
        }
    )
    ((number, row),) = list(iter_feed(profile, xlsx_records(profile, data=out.getvalue())))
    assert number == 2 and (row.sku, row.name, str(row.price)) == ("A-1", "Inline", "1.50")


def test_read_ahead_keeps_order_raises_errors_and_stops_early():
    import threading

    import pytest

    from app.pipelines.feeds import read_ahead

    assert list(read_ahead(iter(range(2000)), batch=7, depth=2)) == list(range(2000))

    def failing():
        yield 1
        raise ValueError("row 9: broken")

    with pytest.raises(ValueError, match="row 9"):
        list(read_ahead(failing(), batch=1))

    closed = threading.Event()

    def endless():
        try:
            n = 0
            while True:
                yield n
                n += 1
        finally:
            closed.set()

    reader = read_ahead(endless(), batch=10, depth=2)
    assert [next(reader) for _ in range(25)] == list(range(25))
    reader.close()
    assert closed.wait(5)
    assert not any(t.name == "feed-reader" for t in threading.enumerate())
