"""``iter_csv_blocks`` (whole blocks, ``FAST_BATCH`` lines at a time) against the model
read a row at a time, over header variations (column order, optional columns missing,
spaces around names) and the number forms a supplier writes ('+1', '1e2', '1.', '.5',
'-0', '00012', 'NaN', Arabic-Indic and full-width digits, 11 digits, 3 decimals...), cells
quoted or not: the same rows, values, line numbers, rejections and first error."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.pipelines.test_upsert_staged import assert_blocks_read_as_the_model

NUMBERS = ["1", "1.00", "1.5", "+1", "1e2", "1.", ".5", "-0", "00012", "0012.50", "NaN"]
NUMBERS += ["Infinity", "\u0661\u0662", "\uff11", " 7", "7 ", "", " ", "12345678901", "1_000"]
NUMBERS += ["9999999999.99", "99999999999.99", "1.005", "-1", "2147483647", "2147483648"]
NUMBERS += ["0.00", "1.0\n0", '"', "1,5"]
SKUS = ["A-1", "A-2", "a-1", "B.1", ".", "..", " A-3", "A/4", "A 5", "", "\ufeffA", "A-1\n"]
NAMES = ["Box", "Two\nlines", "Quoted, name", 'Say "hi"', "", " ", "\t", "x" * 300, "a\rb"]
HEADERS = [
    "sku,name,price,stock,low_stock_threshold",
    "sku,name,price",
    "price,stock,sku,name",
    " sku , name ,price,low_stock_threshold",
]
ODD = st.text(alphabet='AZ09.-\n\r" ,+e', max_size=4)
# Mostly cells of the common form, so that whole blocks are often taken as they are.
COMMON = {
    "sku": ["A-1", "A-2", "B.1", "C-9"],
    "name": ["Box", "Quoted, name"],
    "number": ["1", "1.00", "12.50", "0", "7"],
}


def _cell(pool: list[str], common: list[str], quoted: bool) -> st.SearchStrategy[str]:
    def write(text: str) -> str:
        if quoted or any(c in text for c in ',"\r\n'):
            return '"' + text.replace('"', '""') + '"'
        return text

    odd = st.one_of(st.sampled_from(pool), st.sampled_from(pool), ODD)
    return (
        st.integers(0, 3).flatmap(lambda i: odd if i == 0 else st.sampled_from(common)).map(write)
    )


@st.composite
def _line(draw, width: int) -> str:
    if draw(st.integers(0, 19)) == 0:
        return draw(st.sampled_from(["", "   ", 'A-7,"Open', 'x",1.00,2,']))
    quoted = draw(st.booleans())
    cells = [draw(_cell(SKUS, COMMON["sku"], quoted)), draw(_cell(NAMES, COMMON["name"], quoted))]
    extra = width - 2 + (draw(st.integers(-1, 1)) if draw(st.integers(0, 5)) == 0 else 0)
    cells += [draw(_cell(NUMBERS, COMMON["number"], quoted)) for _ in range(extra)]
    return ",".join(cells)


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_whole_blocks_read_supplier_number_forms_as_the_model(data):
    header = data.draw(st.sampled_from(HEADERS))
    width = header.count(",") + 1
    lines = data.draw(st.lists(_line(width), max_size=10))
    ends = data.draw(st.sampled_from(["\n", "\r\n", "\r"]))
    text = ends.join([header, *lines]) + (ends if data.draw(st.booleans()) else "")
    batch = data.draw(st.sampled_from([1, 2, 3, 4, 1000]))
    assert_blocks_read_as_the_model(text, batch=batch, skip=data.draw(st.booleans()))
