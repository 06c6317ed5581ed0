"""Differential: writes inside a change batch leave what the same writes leave without one,
with savepoints rolled back in the middle.

Hypothesis draws sequences of the ORM operations of the conformance test
(``tests/conformance/test_differential.py``: saves, queryset and bulk writes, deletes, the
async ORM, rolled-back atomic blocks), grouped at random in atomic blocks that are kept or
rolled back (nested up to three savepoints deep). Each sequence runs twice from an empty
database, each time in one committed transaction, each operation in a savepoint of its
own (a failing one rolls back alone, as it would in a view): once inside
``collecting_changes()``, once without. Compared (``tests/tracking/test_batch_delete``):
each operation's result or exception, and the products, price history, ledger, stock
levels, open alerts, deletion audit and webhook outbox the transaction committed; with a
user's ``StockLevel`` delete receivers connected (drawn), also what they saw.

Without a batch a change's effects are written in the savepoint of the change and rolled
back with it; in a batch they are pending until the block ends (or a delete flushes
them), and must be dropped with the savepoint the change was made in, as Django drops
the ``on_commit`` callbacks registered there.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.db.models.signals import post_delete, pre_delete
from hypothesis import given, note
from hypothesis import strategies as st

from app.models import Product, StockLevel, WebhookEvent, WebhookSubscription
from app.webhooks import outbox
from tests.conformance.plainapp.models import ProductProxy
from tests.conformance.test_differential import Rollback, Side, apply, operations
from tests.conftest import differential_settings
from tests.tracking.test_batch_delete import LevelWatcher, run, taken

EXAMPLES = 300
MAX_OPS = 12

# ``product.created`` and ``price.changed``. Left out, defects of their own (found by this
# test, reported): the product in ``product.updated`` and ``product.deleted`` is taken
# from the instance, which may hold an ``F()``/``Case`` value the write did not store
# (assigned to a field a narrow save left out, or kept after a save with it): building the
# event fails (``TypeError``), batch or not. ``stock.low``/``stock.restored`` are built
# from the instance the write had, which a batch reads at its end, after later
# assignments to it. The alerts themselves are compared.
EVENTS = [WebhookEvent.PRODUCT_CREATED.value, WebhookEvent.PRICE_CHANGED.value]

blocks = st.recursive(
    operations,
    lambda inner: st.tuples(
        st.just("block"), st.lists(inner, min_size=1, max_size=4), st.booleans()
    ),
    max_leaves=8,
)


def step(side: Side, op: tuple) -> tuple[str | None, Any]:
    """``op`` in a savepoint of its own: its result, or its exception's type (rolled back)."""
    try:
        with transaction.atomic():
            return None, perform(side, op)
    except Exception as exc:  # compared across the two runs
        return type(exc).__name__, None


def perform(side: Side, op: tuple) -> Any:
    if op[0] != "block":
        return apply(side, op)
    _, inner, rolled_back = op
    results = []
    try:
        with transaction.atomic():
            results = [step(side, each) for each in inner]
            if rolled_back:
                raise Rollback
    except Rollback:
        pass
    return results


def writes_of(ops: list[tuple], results: list) -> Any:
    def writes() -> None:
        side = Side(Product, ProductProxy)
        results.extend(step(side, op) for op in ops)

    return writes


@pytest.mark.django_db(transaction=True)
@differential_settings(EXAMPLES)
@given(ops=st.lists(blocks, min_size=1, max_size=MAX_OPS), watched=st.booleans())
def test_writes_in_a_batch_leave_what_they_leave_without(ops, watched):
    note(f"operations: {ops}")
    taken()  # an empty database (what an earlier example may have left)
    WebhookSubscription.objects.all().delete()
    WebhookSubscription.objects.create(url="https://hooks.example.com/x", events=EVENTS, secret="s")
    outbox.forget_subscriptions()
    watcher = LevelWatcher()
    if watched:
        pre_delete.connect(watcher.pre_delete, sender=StockLevel, dispatch_uid="test.level_pre")
        post_delete.connect(watcher.post_delete, sender=StockLevel, dispatch_uid="test.level_post")
    try:
        seen = watcher.taken if watched else None
        plain_results: list = []
        plain = run(writes_of(ops, plain_results), batched=False, seen=seen)
        batched_results: list = []
        batched = run(writes_of(ops, batched_results), batched=True, seen=seen)
    finally:
        pre_delete.disconnect(sender=StockLevel, dispatch_uid="test.level_pre")
        post_delete.disconnect(sender=StockLevel, dispatch_uid="test.level_post")
        WebhookSubscription.objects.all().delete()
        outbox.forget_subscriptions()
    assert batched_results == plain_results
    assert episodes_left_out(batched) == episodes_left_out(plain)


def episodes_left_out(state: dict[str, list]) -> dict[str, list]:
    """``state`` with only the open alerts. A batch runs consecutive changes as one change
    set, whose alerts effect compares each product's last change with its threshold (by
    design, ``app.services.alerts.check_thresholds``): an alert opened and resolved again
    by changes of one batch is not recorded, where saves one by one record it."""
    return {**state, "alerts": [alert for alert in state["alerts"] if alert[2]]}


@pytest.fixture
def subscribed():
    WebhookSubscription.objects.create(url="https://hooks.example.com/x", events=EVENTS, secret="s")
    outbox.forget_subscriptions()
    yield
    WebhookSubscription.objects.all().delete()
    outbox.forget_subscriptions()


def changes_rolled_back_in_the_middle() -> None:
    kept = Product.objects.create(sku="K-1", name="Kept", price=Decimal("3.00"), stock=9)
    try:
        with transaction.atomic():
            kept.price, kept.stock = Decimal("4.00"), 1  # history, ledger, alert, event
            kept.save()
            with transaction.atomic():  # released, then rolled back with its outer block
                Product.objects.filter(sku="K-1").update(price=Decimal("5.00"))
                Product.objects.create(sku="N-1", name="New", price=Decimal("1.00"), stock=2)
            raise Rollback
    except Rollback:
        pass
    kept.refresh_from_db()
    kept.price = Decimal("6.00")
    kept.save()
    try:
        with transaction.atomic():  # a delete after the rolled-back changes, rolled back
            Product.objects.filter(sku="K-1").delete()
            raise Rollback
    except Rollback:
        pass


@pytest.mark.django_db(transaction=True)
def test_changes_rolled_back_to_a_savepoint_in_a_batch_have_no_effects(subscribed):
    """Only the changes that stand have effects, as without a batch: the save, update and
    create rolled back with their savepoint leave no history, ledger, level, alert or
    event; the later price change and the rolled-back delete change nothing else."""
    plain = run(changes_rolled_back_in_the_middle, batched=False)
    assert plain["products"] == [("K-1", Decimal("6.00"), 9)]
    assert plain["history"] == [("K-1", False, Decimal("3.00"), Decimal("6.00"))]
    assert plain["ledger"] == [("K-1", False, 9)] and plain["alerts"] == []
    assert [event for event, _ in plain["outbox"]] == ["price.changed", "product.created"]
    assert run(changes_rolled_back_in_the_middle, batched=True) == plain
