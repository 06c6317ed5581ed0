"""Step 1 of issue 14: a product's stock is held per location, and every write path keeps
``Product.stock`` equal to the sum of its locations, with a ledger row naming the location."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.db import IntegrityError, transaction
from django.db.models import F

from app.core.context import change_context
from app.models import Location, Product, StockLevel, StockMovement
from app.pipelines.service import process_pipeline
from app.tracking.levels import default_location_id

pytestmark = pytest.mark.django_db


def levels(product: Product) -> dict[str, int]:
    return dict(
        StockLevel.objects.filter(product=product).values_list("location__code", "quantity")
    )


def ledger_by_location(product: Product) -> dict[str, int]:
    sums: dict[str, int] = defaultdict(int)
    for code, delta in StockMovement.objects.filter(product=product).values_list(
        "location__code", "delta"
    ):
        sums[code] += delta
    return {code: n for code, n in sums.items() if n}


def consistent(product: Product) -> dict[str, int]:
    product.refresh_from_db()
    held = levels(product)
    assert sum(held.values()) == product.stock
    assert ledger_by_location(product) == {code: n for code, n in held.items() if n}
    return held


def test_every_orm_path_without_a_location_moves_the_default_location():
    product = Product.objects.create(sku="L-1", name="L", price="1.00", stock=10)
    assert consistent(product) == {"MAIN": 10}
    product.stock = 7
    product.save()
    Product.objects.filter(pk=product.pk).update(stock=F("stock") + 5)
    assert consistent(product) == {"MAIN": 12}
    product.refresh_from_db()
    product.stock = 3
    Product.objects.bulk_update([product], ["stock"])
    Product.objects.bulk_create(
        [Product(sku="L-1", name="L", price="1.00", stock=9)],
        update_conflicts=True,
        unique_fields=["sku"],
        update_fields=["stock"],
    )
    assert consistent(product) == {"MAIN": 9}
    assert set(StockMovement.objects.values_list("location__code", flat=True)) == {"MAIN"}


def test_a_change_inside_a_location_context_moves_that_location_and_names_it():
    product = Product.objects.create(sku="L-2", name="L", price="1.00", stock=10)
    north = Location.objects.create(code="NORTH", name="North")
    with change_context(location_id=north.pk):
        product.stock = 14
        product.save()
    assert consistent(product) == {"MAIN": 10, "NORTH": 4}
    # A change naming no location takes the total's difference at the default location.
    Product.objects.filter(pk=product.pk).update(stock=12)
    assert consistent(product) == {"MAIN": 8, "NORTH": 4}
    row = StockMovement.objects.filter(product=product).order_by("id")[1]
    assert (row.location_id, row.delta, row.stock_after) == (north.pk, 4, 14)


def test_no_location_goes_below_zero_and_nothing_is_half_written():
    product = Product.objects.create(sku="L-3", name="L", price="1.00", stock=2)
    north = Location.objects.create(code="NORTH", name="North")
    with change_context(location_id=north.pk):
        Product.objects.filter(pk=product.pk).update(stock=F("stock") + 5)
    # The total may not drop below what the other locations hold (default would be -1).
    with pytest.raises(IntegrityError), transaction.atomic():
        Product.objects.filter(pk=product.pk).update(stock=4)
    # Nor may a named location go below zero.
    with pytest.raises(IntegrityError), transaction.atomic(), change_context(location_id=north.pk):
        Product.objects.filter(pk=product.pk).update(stock=F("stock") - 6)
    assert consistent(product) == {"MAIN": 2, "NORTH": 5}


def test_the_default_location_is_created_on_first_use_and_follows_the_setting(settings):
    settings.STOCKPIPE_DEFAULT_LOCATION = "SHOP-1"
    product = Product.objects.create(sku="L-4", name="L", price="1.00", stock=6)
    assert Location.objects.get(code="SHOP-1").pk == default_location_id()
    assert consistent(product) == {"SHOP-1": 6}


@pytest.mark.parametrize("route", ["object", "sql"])
def test_pipeline_stock_steps_keep_the_locations(route, monkeypatch):
    from app.pipelines import staged

    if route == "object":
        monkeypatch.setattr(staged, "applies", lambda unit: False)
    products = [
        Product.objects.create(sku=f"P-{i}", name="P", price="1.00", stock=10) for i in range(3)
    ]
    result = process_pipeline(
        {
            "steps": [
                {"op": "set_stock", "stock": {"P-0": 4, "P-1": 20}},
                {"op": "adjust_stock", "deltas": {"P-1": -5, "P-2": 3}},
            ]
        }
    )
    assert result["status"] == "succeeded", result
    assert [consistent(p) for p in products] == [{"MAIN": 4}, {"MAIN": 15}, {"MAIN": 13}]


def test_deleting_a_product_deletes_its_levels_and_keeps_its_ledger():
    product = Product.objects.create(sku="L-5", name="L", price="1.00", stock=6)
    product.delete()
    assert not StockLevel.objects.exists()
    assert StockMovement.objects.get().location.code == "MAIN"
