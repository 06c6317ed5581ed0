"""Migration 0012 fills the reservation counters from the active holds (due or not; ended
holds do not count): per product, and per (product, location) for holds naming one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from app.models import Location, Product, Reservation, StockLevel
from app.services import reservations
from app.services.stock import adjust_stock
from tests.migrations import migrated_back


@pytest.mark.django_db(transaction=True)
def test_counters_are_filled_from_the_active_holds():
    Location.objects.create(code="MIG-A", name="A")
    first = Product.objects.create(sku="MIG-1", name="M", price="1.00", stock=10)
    adjust_stock(first, 8, user=None, reason="in", location="MIG-A")
    second = Product.objects.create(sku="MIG-2", name="M", price="1.00", stock=5)
    Product.objects.create(sku="MIG-0", name="M", price="1.00", stock=3)
    reservations.reserve(first, 2, user=None)
    reservations.reserve(first, 3, user=None, location="MIG-A")
    reservations.reserve(first, 1, user=None, location="MAIN")
    due = reservations.reserve(first, 4, user=None, location="MIG-A").reservation
    Reservation.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(hours=1))
    gone = reservations.reserve(second, 5, user=None).reservation
    reservations.release(gone.pk, user=None)
    reservations.reserve(second, 1, user=None)
    with migrated_back("0011"):
        with connection.cursor() as cursor:  # before: no counter
            cursor.execute("SELECT * FROM app_product LIMIT 0")
            assert "reserved" not in [c[0] for c in cursor.description]
        call_command("migrate", "app", verbosity=0)
    assert dict(Product.objects.values_list("sku", "reserved")) == {
        "MIG-0": 0,
        "MIG-1": 10,  # 2 + 3 + 1 + 4 (due, not yet swept: still active)
        "MIG-2": 1,
    }
    levels = {
        (level.product.sku, level.location.code): level.reserved
        for level in StockLevel.objects.select_related("product", "location")
    }
    assert levels == {
        ("MIG-0", "MAIN"): 0,
        ("MIG-1", "MAIN"): 1,
        ("MIG-1", "MIG-A"): 7,
        ("MIG-2", "MAIN"): 0,
    }
    # The sweep then takes the due hold out of both counters.
    assert reservations.expire_due() == 1
    assert Product.objects.get(sku="MIG-1").reserved == 6
    assert StockLevel.objects.get(product__sku="MIG-1", location__code="MIG-A").reserved == 3
