"""The spec's per-item checks take a fast path for the common case (a map step validates
one SKU and one value per product): it must decide exactly as the full check does."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import example, given
from hypothesis import strategies as st
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
