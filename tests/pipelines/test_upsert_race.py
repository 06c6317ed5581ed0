"""A new SKU of an upsert that another transaction creates (and commits) after the step
looked it up: the step fails naming the SKU, the run writes nothing, on both routes
(PostgreSQL; on SQLite the run's transaction holds the write lock from the start).
Before, the INSERT's unique violation failed the run as an internal error."""

from __future__ import annotations

import threading
import time
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


def _waiting_for_a_lock(watcher) -> bool:
    with watcher.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone() is not None


@pytest.mark.parametrize("change", ["renamed", "deleted"])
def test_a_product_changed_while_the_stage_waits_for_its_lock_is_not_taken_by_its_old_sku(
    change,
):
    """The SQL route finds each row's product (a snapshot) before locking it: another
    transaction renaming or deleting the product meanwhile holds the lock, and once it
    commits the stage sees the row as it is now. The old SKU is then a new product, as if
    the upsert had run after the other transaction; the renamed product keeps its values."""
    kept = Product.objects.create(sku="R-1", name="Old one", price=Decimal("1.00"), stock=10)
    other = connections.create_connection("default")
    watcher = connections.create_connection("default")
    for connection in (other, watcher):  # committed and closed by the thread below
        connection.inc_thread_sharing()
    other.ensure_connection()
    other.set_autocommit(False)
    with other.cursor() as cursor:
        if change == "renamed":
            cursor.execute("UPDATE app_product SET sku = 'R-1-OLD' WHERE id = %s", [kept.pk])
        else:
            for table in ("app_stocklevel", "app_stockmovement", "app_stockalert"):
                cursor.execute(f"DELETE FROM {table} WHERE product_id = %s", [kept.pk])
            cursor.execute("DELETE FROM app_product WHERE id = %s", [kept.pk])

    waited = []

    def commit_once_waited_for() -> None:
        try:
            for _ in range(500):
                if _waiting_for_a_lock(watcher):
                    waited.append(True)
                    break
                time.sleep(0.01)
        finally:
            try:
                other.commit()
            finally:
                other.close()
                watcher.close()

    thread = threading.Thread(target=commit_once_waited_for)
    thread.start()
    try:
        result = process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": CSV}]})
    finally:
        thread.join()
    assert waited, "the run never waited for the other transaction's lock"
    assert result["status"] == "succeeded", result.get("error")
    assert (result["steps"][0]["created"], result["steps"][0]["updated"]) == (3, 0)
    products = {p.sku: (p.name, p.price, p.stock) for p in Product.objects.all()}
    expected = {
        "R-1": ("Old one", Decimal("2.00"), 1),
        "RACE-1": ("New one", Decimal("3.00"), 2),
        "R-NEW": ("Other new", Decimal("4.00"), 7),
    }
    if change == "renamed":
        expected["R-1-OLD"] = ("Old one", Decimal("1.00"), 10)
        assert Product.objects.get(sku="R-1-OLD").pk == kept.pk
    assert products == expected
