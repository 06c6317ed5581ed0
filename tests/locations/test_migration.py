"""Migration 0009 moves existing stock to the default location: on a database with
history, the ledger still sums to the stock per product and per (product, location)."""

from __future__ import annotations

from collections import defaultdict

import pytest
from django.core.management import call_command
from django.db import connection

from app.models import Location, Product, StockLevel, StockMovement
from app.services.stock import adjust_stock
from tests.migrations import migrated_back


@pytest.mark.django_db(transaction=True)
def test_existing_stock_and_ledger_move_to_the_default_location():
    for i in range(5):
        product = Product.objects.create(sku=f"M-{i}", name="M", price="1.00", stock=10 + i)
        adjust_stock(product, -3, user=None, reason="sold")
        adjust_stock(product, 7, user=None, reason="restock")
    Product.objects.create(sku="M-EMPTY", name="M", price="1.00", stock=0)
    with migrated_back("0008"):
        with connection.cursor() as cursor:  # the ledger before: no location column
            cursor.execute("SELECT COUNT(*) FROM app_stockmovement")
            assert cursor.fetchone()[0] == 15
        call_command("migrate", "app", verbosity=0)
    main = Location.objects.get(code="MAIN")
    by_product: dict[int, int] = defaultdict(int)
    by_location: dict[tuple[int, int], int] = defaultdict(int)
    for product_id, location_id, delta in StockMovement.objects.values_list(
        "product_id", "location_id", "delta"
    ):
        by_product[product_id] += delta
        by_location[product_id, location_id] += delta
    for product in Product.objects.all():
        assert by_product[product.pk] == product.stock
        assert by_location[product.pk, main.pk] == product.stock
        assert StockLevel.objects.get(product=product).location_id == main.pk
        assert StockLevel.objects.get(product=product).quantity == product.stock
    assert StockMovement.objects.count() == 15
    # Writes after the migration carry on at the default location.
    adjust_stock("M-0", -1, user=None, reason="sold")
    assert StockLevel.objects.get(product__sku="M-0").quantity == 13
