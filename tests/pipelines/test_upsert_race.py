"""A new SKU of an upsert that another transaction creates (and commits) after the step
looked it up: the step fails naming the SKU, the run writes nothing, on both routes
(PostgreSQL; on SQLite the run's transaction holds the write lock from the start).
Before, the INSERT's unique violation failed the run as an internal error."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connections
from django.db.models.signals import pre_save
from django.utils import timezone

from app.models import Product
from app.pipelines import located, upserts
from app.utils.utils import process_pipeline
from tests.pipelines.test_identity import observe
from tests.pipelines.test_staged import user_pre_save

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

CSV = (
    "sku,name,price,stock\n"
    "R-1,Old one,2.00,1\n"  # existing: updated
    "RACE-1,New one,3.00,2\n"  # new when looked up; created meanwhile by another session
    "R-NEW,Other new,4.00,7\n"
)


def create_elsewhere(sku: str) -> None:
    """Another session creates ``sku`` and commits."""
    other = connections.create_connection("default")
    try:
        now = timezone.now()
        with other.cursor() as cursor:
            cursor.execute(
                "INSERT INTO app_product (sku, name, price, stock, low_stock_threshold, "
                "created_at, updated_at) VALUES (%s, 'Theirs', 9.00, 50, 5, %s, %s)",
                [sku, now, now],
            )
    finally:
        other.close()


@pytest.mark.parametrize("route", ["sql", "objects"])
def test_a_sku_created_meanwhile_fails_the_step_naming_it(monkeypatch, route):
    Product.objects.create(sku="R-1", name="Old one", price=Decimal("1.00"), stock=10)
    # Between the step's look-up (and locks) and its INSERT: on the SQL route after the
    # stage is resolved, on the object route after the chunk's existing SKUs are locked.
    module, name = (upserts, "_check_totals") if route == "sql" else (located, "check_totals")
    real = getattr(module, name)

    def then_created_elsewhere(*args, **kwargs):
        result = real(*args, **kwargs)
        create_elsewhere("RACE-1")
        return result

    monkeypatch.setattr(module, name, then_created_elsewhere)
    before = observe()
    if route == "objects":  # a receiver outside the project: the object route
        pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.race")
    try:
        result = process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": CSV}]})
    finally:
        pre_save.disconnect(sender=Product, dispatch_uid="test.race")
    assert result["status"] == "failed"
    assert result["error"]["errors"] == [
        {
            "loc": ["steps", 0, "csv", "RACE-1"],
            "msg": "step 0 (upsert_products): SKU RACE-1 was created by another transaction "
            "while this step ran; nothing was written: run the pipeline again",
        }
    ]
    after = observe()
    theirs = ("RACE-1", "Theirs", Decimal("9.00"), 50, 5)
    assert theirs in after["products"]
    after["products"].remove(theirs)
    assert after == before  # nothing of the run was written
