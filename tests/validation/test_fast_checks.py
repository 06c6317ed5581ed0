"""The spec's per-item checks take a fast path for the common case (a map step validates
one SKU and one value per product): it must decide exactly as the full check does."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import BaseModel, Field, ValidationError
from pydantic_core import PydanticCustomError

from app.core import domain


def outcome(check, value):
    try:
        result = check(value)
    except PydanticCustomError as exc:
        return ("refused", str(exc))
    return ("accepted", str(result) if isinstance(result, Decimal) else result)


def full_sku_ref(value):
    message = domain.sku_ref_problem(value)
    if message:
        raise PydanticCustomError("invalid_value", "{reason}", {"reason": message})
    return value


prices = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False),
    st.decimals(min_value=0, max_value=10**11, places=2),
    st.decimals(min_value=-1, max_value=10**11, places=3),
    st.builds(
        lambda d, e: Decimal(d).scaleb(e), st.integers(-(10**13), 10**13), st.integers(-4, 3)
    ),
)


@given(prices)
@example(Decimal("-0.00"))
@example(Decimal("0.00"))
@example(Decimal("1234567890.00"))
@example(Decimal("12345678901.00"))
@example(Decimal("1.230"))
@example(Decimal("1E+2"))
@example(Decimal("1e-2"))
def test_the_price_fast_path_decides_as_the_full_check(value):
    assert outcome(domain._checked_price, value) == outcome(domain._checked_any_price, value)


@given(st.text(max_size=70))
@example("")
@example("a" * 64)
@example("a" * 65)
@example("A-1\x00")
@example("A\ud800")
@example("A B/C\n")
def test_the_sku_reference_fast_path_decides_as_the_full_check(value):
    assert outcome(domain._checked_sku_ref, value) == outcome(full_sku_ref, value)


# --- SKU -> value maps (map steps): bulk checks, then pydantic's compiled validators ----------

sku_keys = st.one_of(
    st.from_regex(r"[A-Z]{1,3}-[0-9]{1,5}", fullmatch=True),
    st.text(max_size=70),
    st.sampled_from(["", "a" * 64, "a" * 65, "A-1\x00", "A\ud800", "A B/C\n", "\x00"]),
)
price_inputs = st.one_of(
    st.from_regex(r"[0-9]{1,11}\.[0-9]{1,3}", fullmatch=True),
    st.text(max_size=14),
    st.sampled_from(
        ["1.00", "9.9", "-1.00", "-0.00", "1e2", "0000000001.25", "nan", " 1.00", "1.00\n"]
    ),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.integers(-5, 10**12),
    st.floats(),
    st.booleans(),
    st.none(),
)
count_inputs = st.one_of(
    st.integers(-(2**32), 2**32),
    st.sampled_from(["5", "-3", "x", "1.0", 1.0, 1.5, True, None]),
)


def validated(model, data):
    """What validating ``{"m": data}`` gives: the values (typed) or the located errors."""
    try:
        found = model(m=data).m
    except ValidationError as exc:
        return (
            "refused",
            [(e["type"], e["loc"], e["msg"], repr(e["input"])) for e in exc.errors()],
        )
    return ("accepted", [(k, type(v).__name__, str(v)) for k, v in found.items()])


def models(fast, value):
    class Fast(BaseModel):
        m: fast

    class Full(BaseModel):
        m: dict[domain.SkuRef, value] = Field(min_length=1)

    return Fast, Full


PRICES = models(domain.PriceMap, domain.Price)
DELTAS = models(domain.DeltaMap, domain.Delta)
STOCKS = models(domain.StockMap, domain.Stock)


@given(
    st.one_of(st.dictionaries(sku_keys, price_inputs, max_size=4), st.none(), st.lists(st.text()))
)
@example({})
@example({"A-1": "12.50", "B-2": "0.00"})
@example({"A-1": "12.50", "B-2": "9.9"})
@example({"A-1": "12.50", "B\x00": "1.00", "C": "x"})
@example({"A-1": "12345678901.00"})
@example({"A-1\x00B-2": "1.00"})
@example({"A-1": "1.00\n2.00"})
def test_a_price_map_validates_as_the_per_item_map(data):
    fast, full = PRICES
    assert validated(fast, data) == validated(full, data)


@given(st.one_of(st.dictionaries(sku_keys, count_inputs, max_size=4), st.none()))
@example({})
@example({"A-1": 3, "B-2": -3})
@example({"A-1": 2**31, "B\x00": 1})
def test_a_delta_or_stock_map_validates_as_the_per_item_map(data):
    for fast, full in (DELTAS, STOCKS):
        assert validated(fast, data) == validated(full, data)


def test_the_maps_keep_their_json_schema():
    for fast, full in (PRICES, DELTAS, STOCKS):
        for mode in ("validation", "serialization"):
            assert (
                fast.model_json_schema(mode=mode)["properties"]
                == (full.model_json_schema(mode=mode)["properties"])
            )
