"""A product changed and then deleted inside one change batch leaves what the same writes
leave without a batch: the effects of the change run before the delete, so its history and
ledger rows are kept with ``product`` set to NULL (SET_NULL), its stock level goes with it
(CASCADE) and its alert is closed, instead of being written after the row is gone (a level
and an open alert for a deleted product, a ledger row failing its foreign key at commit).

Transactional: the foreign keys are checked when the block commits.
"""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import transaction

from app.models import DeletionAudit, PriceHistory, Product, StockAlert, StockLevel, StockMovement
from app.tracking.batch import collecting_changes

pytestmark = pytest.mark.django_db(transaction=True)


def snapshot() -> dict[str, list]:
    return {
        "products": sorted(Product.objects.values_list("sku", "price", "stock")),
        "history": sorted(
            (sku, pid is None, old, new)
            for sku, pid, old, new in PriceHistory.objects.values_list(
                "sku", "product_id", "old_price", "new_price"
            )
        ),
        "ledger": sorted(
            (sku, pid is None, delta)
            for sku, pid, delta in StockMovement.objects.values_list("sku", "product_id", "delta")
        ),
        "levels": sorted(StockLevel.objects.values_list("product__sku", "quantity")),
        "alerts": sorted(
            (sku, pid is None, resolved is None)
            for sku, pid, resolved in StockAlert.objects.values_list(
                "sku", "product_id", "resolved_at"
            )
        ),
        "audit": sorted(DeletionAudit.objects.values_list("object_repr", flat=True)),
    }


def change_then_delete(how: str) -> None:
    keep = Product.objects.create(sku="K-1", name="Kept", price=Decimal("3.00"), stock=9)
    gone = Product.objects.create(sku="G-1", name="Gone", price=Decimal("5.00"), stock=20)
    gone.price = Decimal("4.50")
    gone.stock = 2  # under the default threshold: opens an alert
    gone.save()
    keep.stock = 8
    keep.save()
    if how == "model":
        gone.delete()
    else:
        Product.objects.filter(sku="G-1").delete()


def taken() -> dict[str, list]:
    """``snapshot()``, then the tables cleared for the next run."""
    state = snapshot()
    Product.objects.all().delete()
    for model in (PriceHistory, StockMovement, StockAlert, DeletionAudit):
        model.objects.all().delete()
    return state


def run(writes: Callable[[], None], batched: bool) -> dict[str, list]:
    """The tables ``writes`` leaves (in one transaction, in a batch or not), then cleared."""
    with transaction.atomic():
        if batched:
            with collecting_changes():
                writes()
        else:
            writes()
    return taken()


@pytest.mark.parametrize("how", ["model", "queryset"])
def test_change_then_delete_in_one_batch_is_the_same_as_without(how):
    plain = run(lambda: change_then_delete(how), batched=False)
    assert plain["history"] == [("G-1", True, Decimal("5.00"), Decimal("4.50"))]
    assert plain["alerts"] == [("G-1", True, False)]  # opened, then closed by the delete
    assert ("G-1", True, 20) in plain["ledger"]
    assert run(lambda: change_then_delete(how), batched=True) == plain


class Abort(Exception):
    pass


def change_then_delete_rolled_back(times: int = 1) -> None:
    keep = Product.objects.create(sku="K-1", name="Kept", price=Decimal("3.00"), stock=9)
    Product.objects.create(sku="G-1", name="Gone", price=Decimal("5.00"), stock=20)
    keep.price = Decimal("4.00")
    keep.stock = 1  # under the default threshold: opens an alert
    keep.save()
    for _ in range(times):
        try:
            with transaction.atomic():
                Product.objects.filter(sku="G-1").delete()
                raise Abort
        except Abort:
            pass


@pytest.mark.parametrize("times", [1, 2])
def test_delete_rolled_back_to_a_savepoint_loses_no_earlier_change(times):
    """A delete runs the batch's earlier changes' effects inside the caller's savepoint:
    when that savepoint rolls back (the delete with it), those changes' history, ledger,
    levels and alerts must still be written, as without a batch (also when a second
    delete, rolled back too, ran them again)."""

    def once(batched: bool) -> dict[str, list]:
        return run(lambda: change_then_delete_rolled_back(times), batched)

    plain = once(batched=False)
    assert plain["history"] == [("K-1", False, Decimal("3.00"), Decimal("4.00"))]
    assert ("G-1", 20) in plain["levels"] and plain["audit"] == []
    assert once(batched=True) == plain


def test_delete_in_a_transaction_committed_inside_the_batch_runs_effects_once():
    """A batch around a whole transaction: what the delete ran early was committed with
    it, and the batch's end does not run it again."""
    with collecting_changes(), transaction.atomic():
        change_then_delete("queryset")
    batched = taken()
    assert batched == run(lambda: change_then_delete("queryset"), batched=False)


def test_deleting_many_products_in_a_batch_marks_one_early_flush():
    """Django's ``delete()`` sends ``pre_delete`` per product while another receiver
    listens: only the first, with changes pending, flushes (and registers its marker)."""
    from django.db import connection
    from django.db.models.signals import pre_delete

    def watching(sender, instance, **kwargs) -> None:
        pass

    pre_delete.connect(watching, sender=Product, dispatch_uid="test.watching")
    try:
        with transaction.atomic(), collecting_changes() as batch:
            Product.objects.bulk_create(
                Product(sku=f"M-{i}", name="M", price=Decimal("1.00"), stock=3) for i in range(20)
            )
            before = len(connection.run_on_commit)
            Product.objects.filter(sku__startswith="M-").delete()
            assert len(batch.early) == 1
            assert len(connection.run_on_commit) - before <= 2
    finally:
        pre_delete.disconnect(sender=Product, dispatch_uid="test.watching")
    assert not Product.objects.exists()
