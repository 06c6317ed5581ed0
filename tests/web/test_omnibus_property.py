"""The prior price equals the lowest price *in effect* during the window, on random histories.

The reference below evaluates the price as a step function of time and takes the minimum
over the window directly; the implementation instead takes the minimum of the changes' old
prices in one ordered query. Hypothesis checks they agree, including stepped reductions.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import PriceHistory
from app.selectors.dashboard import price_history_rows
from app.services import omnibus
from app.services.omnibus import current_reduction
from tests.conftest import hypothesis_examples
from tests.factories import ProductFactory

WINDOW_HOURS = 30 * 24
T0 = timezone.now().replace(microsecond=0) - timedelta(days=200)


def reference(launch: int, changes: list[tuple[int, int]], at: int):
    """(prior price, anchor hour) from first principles, or None if no reduction at ``at``."""
    history, price = [], launch
    for hour, new in changes:  # (hour, old, new) with distinct, increasing hours
        history.append((hour, price, new))
        price = new
    past = [c for c in history if c[0] <= at]
    if not past:
        return None
    latest = past[-1]
    if latest[2] >= latest[1] or at - latest[0] >= WINDOW_HOURS:
        return None
    index = len(past) - 1
    while index > 0:
        prev = past[index - 1]
        if prev[2] < prev[1] and past[index][0] - prev[0] < WINDOW_HOURS:
            index -= 1
        else:
            break
    anchor = past[index][0]

    def price_at(hour):  # the price in effect from ``hour`` on
        current = launch
        for h, _, new in history:
            if h <= hour:
                current = new
        return current

    start = anchor - WINDOW_HOURS
    in_effect = [price_at(start)] + [price_at(h) for h, _, _ in history if start < h < anchor]
    return min(in_effect), anchor


histories = st.tuples(
    st.integers(1, 200),
    st.lists(st.tuples(st.integers(1, 60 * 24), st.integers(1, 200)), min_size=0, max_size=12),
    st.integers(0, 80 * 24),
)


def write_history(product, launch: int, changes: list[tuple[int, int]]) -> None:
    """Price history rows for ``changes`` (hour after T0, new price), from ``launch``."""
    rows, previous = [], launch
    for hour, new in changes:
        rows.append(
            PriceHistory(
                product=product,
                sku=product.sku,
                name=product.name,
                old_price=Decimal(previous),
                new_price=Decimal(new),
                changed_at=T0 + timedelta(hours=hour),
            )
        )
        previous = new
    PriceHistory.objects.bulk_create(rows)


@pytest.mark.django_db
@settings(
    max_examples=hypothesis_examples(150),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(histories)
def test_matches_the_step_function_reference(history):
    launch, gaps, at_offset = history
    changes, hour, price = [], 0, launch
    for gap, new in gaps:
        hour += gap
        if new != price:
            changes.append((hour, new))
            price = new
    at = min(at_offset, hour + 40 * 24)
    product = ProductFactory(price=Decimal(price))
    write_history(product, launch, changes)
    expected = reference(launch, changes, at)
    got = current_reduction(product, T0 + timedelta(hours=at))
    assert _in_chunks_of_two(product, T0 + timedelta(hours=at)) == got
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert (got.prior_price, got.started_at) == (
            Decimal(expected[0]),
            T0 + timedelta(hours=expected[1]),
        )


def _in_chunks_of_two(product, at):
    """The same answer when the history is read two rows per query (chunk boundaries)."""
    chunk = omnibus.CHUNK
    omnibus.CHUNK = 2
    try:
        return current_reduction(product, at)
    finally:
        omnibus.CHUNK = chunk


@pytest.mark.django_db
@settings(
    max_examples=hypothesis_examples(100),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 9)), min_size=1, max_size=14))
def test_changes_sharing_a_time_read_in_chunks_give_the_same_answer(steps):
    """Bulk writes give many changes one timestamp: the chunks continue on (time, id)."""
    product = ProductFactory(price=Decimal(steps[-1][1]))
    changes, hour = [], 0
    for gap, new in steps:
        hour += gap
        changes.append((hour, new))
    write_history(product, 5, changes)
    for at in range(hour + 2):
        when = T0 + timedelta(hours=at)
        assert _in_chunks_of_two(product, when) == current_reduction(product, when), at


@pytest.mark.django_db
@settings(
    max_examples=hypothesis_examples(60),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(st.tuples(st.integers(0, 40 * 24), st.integers(1, 9)), min_size=1, max_size=10),
    st.integers(0, 3),
)
def test_the_walk_from_rows_already_read_gives_the_same_answer(steps, chunk):
    """The product page hands the walk the latest rows it read for its chart (newer than
    ``at`` too): the walk goes on past them in the database, or not at all when they are the
    whole history; any prefix of the history, with ties on time, gives the same answer."""
    product = ProductFactory(price=Decimal(steps[-1][1]))
    changes, hour = [], 0
    for gap, new in steps:
        hour += gap
        changes.append((hour, new))
    write_history(product, 5, changes)
    latest = price_history_rows(product)  # newest first, as the page reads them
    assert len(latest) == len(changes)
    for at in sorted({0, *(h for h, _ in changes), hour + 1, hour + 31 * 24}):
        when = T0 + timedelta(hours=at)
        expected = current_reduction(product, when)
        omnibus.CHUNK, saved = chunk + 1, omnibus.CHUNK
        try:
            for k in range(len(latest) + 1):
                got = current_reduction(product, when, newest=latest[:k])
                assert got == expected, (at, k)
            got = current_reduction(product, when, newest=latest, whole=True)
            assert got == expected, at
        finally:
            omnibus.CHUNK = saved
