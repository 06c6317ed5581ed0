"""A product changed and then deleted inside one change batch leaves what the same writes
leave without a batch: the effects of the change run before the delete, so its history and
ledger rows are kept with ``product`` set to NULL (SET_NULL), its stock level goes with it
(CASCADE) and its alert is closed, instead of being written after the row is gone (a level
and an open alert for a deleted product, a ledger row failing its foreign key at commit).

Also with a user's receiver of ``StockLevel``'s deletes connected, which makes Django's
``Collector`` load the levels before any ``pre_delete`` is sent: the batch runs the effects
before the delete collects anything, so it sees the level the change made.

Transactional: the foreign keys are checked when the block commits.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_delete, pre_delete

from app.models import (
    DeletionAudit,
    PriceHistory,
    Product,
    StockAlert,
    StockLevel,
    StockMovement,
    WebhookDelivery,
)
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
        "outbox": sorted(
            (event, json.dumps(without_keys(data), sort_keys=True))
            for event, data in WebhookDelivery.objects.values_list("event_type", "data")
        ),
    }


def without_keys(data: Any) -> Any:
    """An event's data without what differs between two runs of the same writes (row ids,
    times)."""
    if isinstance(data, dict):
        return {
            key: without_keys(value)
            for key, value in data.items()
            if key != "id" and not key.endswith("_at")
        }
    if isinstance(data, list):
        return [without_keys(value) for value in data]
    return data


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
    for model in (PriceHistory, StockMovement, StockAlert, DeletionAudit, WebhookDelivery):
        model.objects.all().delete()
    return state


def run(
    writes: Callable[[], None], batched: bool, seen: Callable[[], list] | None = None
) -> dict[str, list]:
    """The tables ``writes`` leaves (in one transaction, in a batch or not), then cleared;
    with ``seen``, what it returns after the commit (before clearing) as ``"seen"``."""
    with transaction.atomic():
        if batched:
            with collecting_changes():
                writes()
        else:
            writes()
    if seen is None:
        return taken()
    observed = seen()
    state = taken()
    seen()  # what clearing the tables showed: not the writes'
    state["seen"] = observed
    return state


@pytest.mark.parametrize("how", ["model", "queryset"])
def test_change_then_delete_in_one_batch_is_the_same_as_without(how):
    plain = run(lambda: change_then_delete(how), batched=False)
    assert plain["history"] == [("G-1", True, Decimal("5.00"), Decimal("4.50"))]
    assert plain["alerts"] == [("G-1", True, False)]  # opened, then closed by the delete
    assert ("G-1", True, 20) in plain["ledger"]
    assert run(lambda: change_then_delete(how), batched=True) == plain


class LevelWatcher:
    """A user's ``pre_delete``/``post_delete`` receivers of ``StockLevel``: the quantities
    of the levels Django deletes with a product, as the receivers see them."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def pre_delete(self, sender, instance, **kwargs) -> None:
        self.seen.append(("pre_delete", instance.quantity))

    def post_delete(self, sender, instance, **kwargs) -> None:
        self.seen.append(("post_delete", instance.quantity))

    def taken(self) -> list[tuple[str, int]]:
        seen, self.seen = self.seen, []
        return seen


@pytest.fixture
def level_watcher():
    watcher = LevelWatcher()
    pre_delete.connect(watcher.pre_delete, sender=StockLevel, dispatch_uid="test.level_pre")
    post_delete.connect(watcher.post_delete, sender=StockLevel, dispatch_uid="test.level_post")
    yield watcher
    pre_delete.disconnect(sender=StockLevel, dispatch_uid="test.level_pre")
    post_delete.disconnect(sender=StockLevel, dispatch_uid="test.level_post")


@pytest.mark.parametrize("how", ["model", "queryset"])
def test_change_then_delete_in_a_batch_with_a_level_receiver_is_the_same_as_without(
    how, level_watcher
):
    """The receiver makes Django's ``Collector`` load the product's levels while it
    collects, before ``pre_delete``: a level the batch wrote only then (the product was
    created in the batch) would be missed, left for a deleted product (a foreign key
    error at commit) and never reported to the receiver."""

    def once(batched: bool) -> dict[str, list]:
        return run(lambda: change_then_delete(how), batched, seen=level_watcher.taken)

    plain = once(batched=False)
    assert plain["seen"] == [("pre_delete", 2), ("post_delete", 2)]  # G-1's level, changed
    assert once(batched=True) == plain


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
            assert len(batch.written) == 1
            assert len(connection.run_on_commit) - before <= 2
    finally:
        pre_delete.disconnect(sender=Product, dispatch_uid="test.watching")
    assert not Product.objects.exists()
