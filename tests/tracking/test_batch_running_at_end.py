"""Differential: a pipeline run inside a change batch someone else opened (a caller's
``collecting_changes``) leaves what the same writes leave without that batch, when the run
fails or is a preview (its savepoint rolls back after ``running_at_end`` ran the outer
batch's earlier changes inside it), and around deletes and per-location change contexts.

Compared: products, price history, ledger, levels, alerts, audit, the webhook outbox (all
event types, in write order) and what receivers of ``alerts_opened`` were told.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from decimal import Decimal
from typing import Any

import pytest
from django.db import IntegrityError, transaction

from app.core.context import change_context
from app.models import (
    Location,
    PriceHistory,
    Product,
    StockLevel,
    StockMovement,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from app.signals import alerts_opened
from app.tracking import effects
from app.tracking.batch import collecting_changes
from app.utils.utils import process_pipeline
from app.webhooks import outbox
from tests.tracking.test_batch_delete import snapshot, taken, without_keys

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def subscribed() -> Iterator[None]:
    WebhookSubscription.objects.create(
        url="https://hooks.example.com/x", events=[e.value for e in WebhookEvent], secret="s"
    )
    outbox.forget_subscriptions()
    yield
    WebhookSubscription.objects.all().delete()
    outbox.forget_subscriptions()


class Told:
    """A receiver of ``alerts_opened``: the SKUs it was told of, in order."""

    def __init__(self) -> None:
        self.skus: list[str] = []

    def __call__(self, sender, alerts, **kwargs) -> None:
        self.skus.extend(alert.sku for alert in alerts)


@pytest.fixture
def told() -> Iterator[Told]:
    receiver = Told()
    alerts_opened.connect(receiver, dispatch_uid="test.told")
    yield receiver
    alerts_opened.disconnect(dispatch_uid="test.told")


def state(told: Told) -> dict[str, Any]:
    """What the writes left, the outbox in write order (``snapshot`` sorts it), then the
    tables cleared."""
    ordered = [
        (event, json.dumps(without_keys(data), sort_keys=True))
        for event, data in WebhookDelivery.objects.order_by("pk").values_list("event_type", "data")
    ]
    found = {
        **snapshot(),
        "outbox_order": ordered,
        "told": told.skus,
        "levels_at": sorted(
            StockLevel.objects.values_list("product__sku", "location__code", "quantity")
        ),
        "ledger_at": list(
            StockMovement.objects.order_by("pk").values_list(
                "sku", "location__code", "delta", "reason", "source"
            )
        ),
    }
    for key in ("outbox", "outbox_order", "ledger_at"):  # a run's id differs between runs
        found[key] = [tuple(_run_id(v) for v in row) for row in found[key]]
    told.skus = []
    taken()
    return found


def _run_id(value: Any) -> Any:
    return re.sub(r"pipeline:\d+", "pipeline:run", value) if isinstance(value, str) else value


def once(writes: Callable[[], Any], *, batched: bool, told: Told) -> tuple[Any, dict]:
    with transaction.atomic(), collecting_changes() if batched else nullcontext():
        result = writes()
    return result, state(told)


def _result(result: dict) -> dict:
    return {k: v for k, v in result.items() if k not in ("run_id", "status_url", "duration_ms")}


def before_a_run(spec: dict) -> Callable[[], Any]:
    def writes() -> Any:
        a = Product.objects.create(sku="A-1", name="A", price=Decimal("5.00"), stock=20)
        a.price, a.stock = Decimal("6.00"), 2  # history, ledger, an alert, events
        a.save()
        result = process_pipeline(spec)
        a.price = Decimal("6.50")  # the alert stays open
        a.save()
        return _result(result)

    return writes


FAILS_AFTER_A_WRITE = {
    "steps": [
        {"op": "upsert_products", "rows": [{"sku": "U-1", "name": "U", "price": "1.00"}]},
        {"op": "adjust_stock", "deltas": {"A-1": -500}},  # below zero: the run fails
    ]
}
PREVIEW = {
    "dry_run": True,
    "steps": [{"op": "upsert_products", "rows": [{"sku": "U-1", "name": "U", "price": "1.00"}]}],
}
SUCCEEDS = {
    "steps": [
        {"op": "upsert_products", "rows": [{"sku": "U-1", "name": "U", "price": "1.00"}]},
        {"op": "set_stock", "stock": {"A-1": 1}},
    ]
}
DELETES_THEN_FAILS = {
    "steps": [
        {"op": "upsert_products", "rows": [{"sku": "U-1", "name": "U", "price": "1.00"}]},
        {"op": "delete_products", "skus": ["A-1"]},  # runs what is pending first
        {"op": "adjust_stock", "deltas": {"U-1": -500}},
    ]
}
DELETES = {  # A-1 saved again after the run: inserted again, as in Django
    "steps": [
        {"op": "upsert_products", "rows": [{"sku": "U-1", "name": "U", "price": "1.00"}]},
        {"op": "delete_products", "skus": ["A-1"]},
    ]
}


def tables(found: tuple[Any, dict]) -> tuple[Any, dict]:
    """The run's result and the tables, without what a batch changes by design: the order
    of outbox rows (a batch writes an alert's event after the product events of its whole
    change set, ``test_batch_savepoints.EVENTS``) and what receivers were told."""
    result, seen = found
    return result, {k: v for k, v in seen.items() if k not in ("outbox_order", "told")}


@pytest.mark.parametrize(
    "spec",
    [FAILS_AFTER_A_WRITE, PREVIEW, SUCCEEDS, DELETES_THEN_FAILS, DELETES],
    ids=["fails", "preview", "succeeds", "deletes-then-fails", "deletes"],
)
def test_a_run_in_a_callers_batch_leaves_what_it_leaves_without(spec, subscribed, told):
    """The run's savepoint, rolled back (a failure, a preview) or not, holds the effects
    of the caller's earlier changes (``running_at_end`` ran them there): rolled back with
    it, they are written again when the caller's batch ends, once."""
    plain = tables(once(before_a_run(spec), batched=False, told=told))
    assert ("A-1", Decimal("5.00"), Decimal("6.00")) in [
        (h[0], *h[2:]) for h in plain[1]["history"]
    ]
    assert ("A-1", False) in [alert[:2] for alert in plain[1]["alerts"]]
    assert tables(once(before_a_run(spec), batched=True, told=told)) == plain


@pytest.mark.parametrize("spec", [FAILS_AFTER_A_WRITE, PREVIEW], ids=["fails", "preview"])
def test_a_rolled_back_run_does_not_tell_of_the_callers_alert_twice(spec, told):
    """``alerts_opened`` receivers are told of A-1's alert once, as without a batch: the
    run's savepoint does not hold the caller's pending changes (``_attempt`` runs them
    first, ``flush_open``). Else ``running_at_end`` ran them inside it (the alert opened,
    the signal sent), the run rolled back, and the batch ran them again at its end (opened
    and sent again)."""
    plain = once(before_a_run(spec), batched=False, told=told)
    assert plain[1]["told"] == ["A-1", "U-1"]  # U-1: the run's own, rolled back
    assert once(before_a_run(spec), batched=True, told=told)[1]["told"] == plain[1]["told"]


def muted_run() -> Any:
    a = Product.objects.create(sku="A-1", name="A", price=Decimal("5.00"), stock=20)
    a.price = Decimal("6.00")
    a.save()  # the caller's change: its history is not muted
    with effects.muted("history"):
        result = process_pipeline({"steps": [{"op": "set_prices", "prices": {"A-1": "7.00"}}]})
    return _result(result)


def test_a_muted_run_in_a_callers_batch_mutes_only_its_own_effects(told):
    """FINDING (revlead): ``effects.muted(name)`` leaves effect ``name`` out for the block:
    without a batch the caller's earlier change has its history and ledger rows (written
    before the block); in a batch ``running_at_end`` runs that change's effects inside the
    muted block, so they are lost (the initial-stock ledger row too). Before b6a01f7 they
    were written, and so was the run's muted history (at the batch's end)."""
    plain = once(muted_run, batched=False, told=told)
    assert plain[1]["history"] == [("A-1", False, Decimal("5.00"), Decimal("6.00"))]
    assert once(muted_run, batched=True, told=told) == plain


def located() -> Any:
    """Writes at two locations and the default one, interleaved, a delete in the middle,
    and a pipeline run at a location: ledger and levels per location."""
    north = Location.objects.get_or_create(code="NORTH", defaults={"name": "North"})[0]
    south = Location.objects.get_or_create(code="SOUTH", defaults={"name": "South"})[0]
    a = Product.objects.create(sku="A-1", name="A", price=Decimal("5.00"), stock=20)
    g = Product.objects.create(sku="G-1", name="G", price=Decimal("5.00"), stock=20)
    with change_context(location_id=north.pk, reason="north in"):
        a.stock = 25
        a.save()
        g.stock = 22
        g.save()
        with change_context(location_id=south.pk, reason="south in"):
            a.stock = 28
            a.save()
            g.delete()
        a.stock = 27
        a.save()
    with change_context(location_id=south.pk, reason="south run"):
        process_pipeline({"steps": [{"op": "adjust_stock", "deltas": {"A-1": -1}}]})
    a.refresh_from_db()
    a.stock -= 2
    a.save()


def test_changes_at_locations_in_a_batch_land_where_they_do_without(told):
    plain = once(located, batched=False, told=told)
    assert ("A-1", "NORTH", 4) in plain[1]["levels_at"]
    assert once(located, batched=True, told=told) == plain
    assert not PriceHistory.objects.exists()


def overdrawn_at_a_location() -> Any:
    """A stock decrease at a location holding less: the level would go negative (its
    check constraint); the caller catches that write's failure and goes on."""
    north = Location.objects.get_or_create(code="NORTH", defaults={"name": "North"})[0]
    a = Product.objects.create(sku="A-1", name="A", price=Decimal("5.00"), stock=20)
    refused = False
    try:
        with transaction.atomic(), change_context(location_id=north.pk):
            a.stock = 19
            a.save()
    except IntegrityError:
        refused = True
    a.refresh_from_db()
    a.price = Decimal("6.00")
    a.save()
    return refused


def test_a_write_refused_at_a_location_fails_a_batch_as_a_whole(told):
    """Without a batch the levels effect refuses the write in its savepoint (the caller
    catches it, the rest commits). In a batch the effects run when it ends, so the refusal
    comes then, for the whole batch, outside the caller's ``try`` (documented in
    ``app.tracking.batch``): nothing of the batch is written; nothing is half-written."""
    plain = once(overdrawn_at_a_location, batched=False, told=told)
    assert plain[0] is True
    assert plain[1]["levels_at"] == [("A-1", "MAIN", 20)]  # the price change committed
    with pytest.raises(IntegrityError):
        once(overdrawn_at_a_location, batched=True, told=told)
    assert not Product.objects.exists()
    assert not StockMovement.objects.exists()
    assert not StockLevel.objects.exists()
