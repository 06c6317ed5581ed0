"""Omnibus prior price from hand-made price histories (days are counted back from NOW)."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from app.models import PriceHistory
from app.services import omnibus
from app.services.omnibus import current_reduction, discount_percent, prior_price
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


def day(n: float):
    """The moment ``n`` days before NOW."""
    return NOW - timedelta(days=n)


def with_history(launch_price: str, *changes: tuple[float, str]):
    """A product launched at ``launch_price`` whose price changed at (days ago, new price)."""
    prices = [launch_price, *[new for _, new in changes]]
    product = ProductFactory(price=Decimal(prices[-1]))
    PriceHistory.objects.bulk_create(
        PriceHistory(
            product=product,
            sku=product.sku,
            name=product.name,
            old_price=Decimal(old),
            new_price=Decimal(new),
            changed_at=day(days_ago),
        )
        for (days_ago, new), old in zip(changes, prices, strict=False)
    )
    return product


def test_no_history_means_no_reduction():
    product = ProductFactory(price=Decimal("50.00"))
    assert prior_price(product, NOW) is None
    assert discount_percent(product, NOW) is None


def test_simple_reduction_shows_the_price_before_it():
    product = with_history("100.00", (5, "80.00"))
    assert prior_price(product, NOW) == Decimal("100.00")
    assert discount_percent(product, NOW) == Decimal("20.0")


def test_prior_price_is_the_lowest_of_the_30_days_before_the_reduction():
    # 90 applied for ten days inside the window, so 90 (not 100) is the reference.
    product = with_history("100.00", (25, "90.00"), (15, "100.00"), (5, "80.00"))
    assert prior_price(product, NOW) == Decimal("90.00")
    assert discount_percent(product, NOW) == Decimal("11.1")  # 11.11 rounded down


def test_prices_older_than_the_window_do_not_count():
    # 60 ended 45 days before the reduction: outside the 30-day window.
    product = with_history("60.00", (50, "100.00"), (5, "80.00"))
    assert prior_price(product, NOW) == Decimal("100.00")


def test_stepped_reduction_is_anchored_at_its_first_step():
    product = with_history("100.00", (20, "90.00"), (10, "80.00"), (2, "70.00"))
    # Anchored at the last step, the lowest 30-day price would be 80; the law wants 100.
    assert prior_price(product, NOW) == Decimal("100.00")
    assert discount_percent(product, NOW) == Decimal("30.0")
    reduction = current_reduction(product, NOW)
    assert reduction.started_at == day(20) and reduction.price == Decimal("70.00")
    # Between the steps the same anchor applies.
    assert prior_price(product, day(15)) == Decimal("100.00")
    assert discount_percent(product, day(15)) == Decimal("10.0")


def test_stepped_reduction_window_reaches_back_from_the_first_step():
    # An earlier sale at 85 (day 50..40) falls into the 30 days before the first step (day
    # 20), though it is more than 30 days before the last step (day 10).
    product = with_history("100.00", (50, "85.00"), (40, "100.00"), (20, "90.00"), (10, "80.00"))
    assert prior_price(product, NOW) == Decimal("85.00")
    assert discount_percent(product, NOW) == Decimal("5.8")  # 5.88 rounded down


def test_window_boundary_is_exactly_30_days_before_the_anchor():
    # The change to 70 happened exactly 30 days before the reduction: 70 was the price in
    # effect during the whole window, the 100 before it was not.
    product = with_history("100.00", (35, "70.00"), (5, "60.00"))
    assert prior_price(product, NOW) == Decimal("70.00")


def test_steps_more_than_30_days_apart_are_separate_reductions():
    product = with_history("100.00", (70, "90.00"), (20, "80.00"))
    assert prior_price(product, NOW) == Decimal("90.00")
    assert current_reduction(product, NOW).started_at == day(20)


def test_an_increase_ends_the_reduction():
    product = with_history("100.00", (20, "80.00"), (5, "85.00"))
    assert prior_price(product, NOW) is None
    assert discount_percent(product, NOW) is None


def test_a_reduced_price_that_stood_30_days_is_no_longer_a_reduction():
    product = with_history("100.00", (30, "80.00"))
    assert prior_price(product, NOW) is None
    assert prior_price(product, day(1)) == Decimal("100.00")


def test_product_younger_than_30_days_uses_its_launch_price():
    product = with_history("100.00", (3, "80.00"))  # launched a few days ago, no older history
    assert prior_price(product, NOW) == Decimal("100.00")


def test_young_product_with_a_launch_promotion_keeps_its_lowest_price():
    # Launched 12 days ago: a launch promotion at 70, back to 100, now "reduced" to 90.
    product = with_history("100.00", (10, "70.00"), (6, "100.00"), (2, "90.00"))
    assert prior_price(product, NOW) == Decimal("70.00")
    # 90 is above the 30-day low: no discount may be announced.
    assert discount_percent(product, NOW) is None


def test_moment_before_the_reduction_has_no_prior_price():
    product = with_history("100.00", (40, "120.00"), (5, "80.00"))
    assert prior_price(product, day(10)) is None
    assert prior_price(product, day(5)) == Decimal("120.00")


def test_other_products_history_is_ignored():
    product = with_history("100.00", (5, "80.00"))
    with_history("10.00", (10, "5.00"), (4, "1.00"))
    assert prior_price(product, NOW) == Decimal("100.00")
    assert prior_price(product.pk, NOW) == Decimal("100.00")


def test_one_query(django_assert_num_queries):
    product = with_history("100.00", *[(40 - i, str(100 - i)) for i in range(1, 40)])
    with django_assert_num_queries(1):
        reduction = current_reduction(product, NOW)
    assert reduction.prior_price == Decimal("100.00")


def test_a_walk_longer_than_a_query_reads_every_row_once_in_order(django_assert_num_queries):
    # 250 steps down, three at each moment, so the 100th and 101st row (newest first) tie
    # on changed_at at the first page boundary: the keyset must go on by id.
    steps = [(1 + (249 - j) // 3 * 0.1, f"{999 - j}.00") for j in range(250)]
    product = with_history("900.00", (60, "1000.00"), *steps)
    expected = list(
        PriceHistory.objects.filter(product=product)
        .order_by("-changed_at", "-id")
        .values_list("changed_at", "old_price", "new_price")
    )
    assert omnibus.CHUNK == 100
    with django_assert_num_queries(3):  # 100 + 100 + 51 rows
        assert list(omnibus._changes_back_from(product.pk, NOW)) == expected
    with django_assert_num_queries(3):
        reduction = current_reduction(product, NOW)
    assert reduction.price == Decimal("750.00")
    assert reduction.prior_price == Decimal("1000.00")  # anchored at the first of 250 steps
    assert reduction.started_at == day(1 + 83 * 0.1)


def test_reduction_made_through_a_real_save_is_seen():
    product = ProductFactory(price=Decimal("40.00"))
    product.price = Decimal("30.00")
    product.save()
    assert prior_price(product) == Decimal("40.00")
    assert discount_percent(product) == Decimal("25.0")
