"""Adversarial review of the merged set-based effects and folded map steps: cases the
other tests do not seed (reservations and other locations under folded steps, a product
changed twice in one change set with levels at several locations)."""

from __future__ import annotations

import re

import pytest
from django.db import transaction

from app.models import Location, Product, StockAlert, StockLevel
from app.services import reservations
from app.services.context import change_context
from app.services.stock import transfer_stock
from app.tracking.batch import collecting_changes
from tests.pipelines.test_folded import KEYS, SEEDED, adjust, prices, spec, stock
from tests.pipelines.test_identity import (  # noqa: F401 (the recorder fixture)
    assert_same_effects,
    recorder,
    seed,
)

pytestmark = pytest.mark.django_db


def seed_held() -> None:
    """SEEDED, with stock of two products at NORTH and reservations on them."""
    seed(SEEDED)
    Location.objects.create(code="NORTH", name="North")
    with change_context(source="setup"):
        transfer_stock("A-1", "MAIN", "NORTH", 2, user=None)
        transfer_stock("B-2", "MAIN", "NORTH", 4, user=None)
        reservations.reserve("A-1", 2, user=None, reference="r1")
        reservations.reserve("B-2", 3, user=None, location="NORTH", reference="r2")


CASES = {
    "price then adjust": spec(prices("11.00", "20.00", "7.55", "1.00"), adjust(-1, 0, 3, -2)),
    "adjust twice": spec(adjust(-1, 1, 3, -2), adjust(2, -1, -1, 1)),
    "set then adjust": spec(stock(4, 3, 8, 9), adjust(-1, -1, -8, -2)),
    "adjust then set": spec(adjust(1, 0, 1, 0), stock(2, 3, 0, 4)),
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_folded_with_reservations_and_other_locations(recorder, operator, steps):  # noqa: F811
    assert_same_effects(recorder, operator, steps, seed_held, staged=1)


def test_set_stock_below_other_locations_in_second_folded_step_is_located(operator):
    from app.utils.utils import process_pipeline

    seed_held()
    result = process_pipeline(
        spec(adjust(0, 0, 0, 0), stock(1, 3, 0, 9)), user=operator
    )  # A-1 holds 2 at NORTH: a total of 1 is refused, at step 1
    assert result["status"] == "failed", result
    assert [e["loc"] for e in result["error"]["errors"]] == [["steps", 1, "stock", "A-1"]]


def test_product_saved_twice_in_one_change_set_keeps_levels_summing(db):
    seed(SEEDED)
    Location.objects.create(code="NORTH", name="North")
    with change_context(source="setup"):
        transfer_stock("B-2", "MAIN", "NORTH", 4, user=None)
    p = Product.objects.get(sku="B-2")
    with transaction.atomic(), collecting_changes():
        p.stock = 12
        p.save()
        p.stock = 7
        p.save()
        q = Product.objects.get(sku="A-1")
        q.stock = 1
        q.save()
        q.stock = 6
        q.save()
    for sku in ("B-2", "A-1"):
        product = Product.objects.get(sku=sku)
        levels = dict(
            StockLevel.objects.filter(product=product).values_list("location__code", "quantity")
        )
        assert sum(levels.values()) == product.stock, (sku, levels)
    assert not StockAlert.objects.filter(sku="A-1", resolved_at__isnull=True).exists()


def test_keys():
    assert KEYS == ["A-1", "A-2", "B-1", "B-2"]


class _Listener:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def opened(self, sender, alerts, **kwargs) -> None:
        self.seen += [("opened", a.sku) for a in alerts]

    def resolved(self, sender, alerts, **kwargs) -> None:
        self.seen += [("resolved", a.sku) for a in alerts]


@pytest.mark.parametrize("style", ["weak method, any sender", "function, sender StockAlert"])
def test_user_receivers_of_alert_signals_see_the_sql_routes_alerts(operator, style):
    """No webhook subscriber: the alerts effect must still build the alerts for a user's
    receiver, however connected (``app.signals.listened``)."""
    from app.signals import alerts_opened, alerts_resolved
    from app.utils.utils import process_pipeline

    seed(SEEDED)
    listener = _Listener()
    if style.startswith("weak"):
        alerts_opened.connect(listener.opened)  # weak reference to a bound method
        alerts_resolved.connect(listener.resolved)
    else:

        def opened(sender, alerts, **kwargs):
            listener.opened(sender, alerts)

        def resolved(sender, alerts, **kwargs):
            listener.resolved(sender, alerts)

        alerts_opened.connect(opened, sender=StockAlert, weak=False, dispatch_uid="rv.o")
        alerts_resolved.connect(resolved, sender=StockAlert, weak=False, dispatch_uid="rv.r")
    try:
        # A-1 5/4 -> 2 (opens), B-1 0/1 -> 3 (resolves the one opened at creation)
        result = process_pipeline(spec(adjust(-3, 0, 3, 0)), user=operator)
    finally:
        alerts_opened.disconnect(listener.opened)
        alerts_resolved.disconnect(listener.resolved)
        alerts_opened.disconnect(sender=StockAlert, dispatch_uid="rv.o")
        alerts_resolved.disconnect(sender=StockAlert, dispatch_uid="rv.r")
    assert result["status"] == "succeeded", result
    assert sorted(listener.seen) == [("opened", "A-1"), ("resolved", "B-1")]


def test_pipeline_delete_with_a_receiver_writing_stock_off(operator):
    """Per-object route: a user's pre_delete receiver zeroes the stock before the product
    goes (a write-off); the delete step must succeed and leave no level behind."""
    from django.db.models.signals import pre_delete

    from app.utils.utils import process_pipeline

    def write_off(sender, instance, **kwargs):
        if instance.stock:
            instance.stock = 0
            instance.save(update_fields=["stock"])

    seed(SEEDED)
    pk = Product.objects.get(sku="A-1").pk
    pre_delete.connect(write_off, sender=Product, dispatch_uid="review.write_off")
    try:
        result = process_pipeline(spec({"op": "delete_products", "skus": ["A-1"]}), user=operator)
    finally:
        pre_delete.disconnect(sender=Product, dispatch_uid="review.write_off")
    assert result["status"] == "succeeded", result
    assert not Product.objects.filter(pk=pk).exists()
    assert not StockLevel.objects.filter(product_id=pk).exists()


@pytest.mark.parametrize("bulk", [False, True], ids=["save twice", "update twice"])
def test_held_product_changed_twice_in_one_change_set_counts_its_last_change(db, bulk):
    """Watching available stock: A-1 holds 2 units; 5 -> 9 -> 5 in one change set leaves
    3 available, below 4: its alert stays open with the last change's stock (3)."""
    from django.db.models import F

    seed(SEEDED)
    reservations.reserve("A-1", 2, user=None, reference="r")
    alert = StockAlert.objects.get(sku="A-1", resolved_at__isnull=True)
    assert alert.stock == 3
    p = Product.objects.get(sku="A-1")
    with transaction.atomic(), collecting_changes():
        if bulk:
            Product.objects.filter(pk=p.pk).update(stock=F("stock") + 4)
            Product.objects.filter(pk=p.pk).update(stock=F("stock") - 4)
        else:
            p.stock = 9
            p.save()
            p.stock = 5
            p.save()
    still = StockAlert.objects.filter(sku="A-1", resolved_at__isnull=True)
    assert list(still.values_list("pk", "stock")) == [(alert.pk, 3)]


def test_threshold_raised_over_the_available_stock_of_a_held_product_opens_an_alert(db):
    """Watching available stock: A-1 has 10 on hand, 8 held (2 available). Raising its
    threshold from 1 to 5 crosses it for the available stock, not for stock on hand."""
    seed({"A-1": ("10.00", 10, 1)})
    reservations.reserve("A-1", 8, user=None, reference="r")
    assert not StockAlert.objects.filter(sku="A-1").exists()
    p = Product.objects.get(sku="A-1")
    p.low_stock_threshold = 5
    p.save()
    assert list(
        StockAlert.objects.filter(sku="A-1", resolved_at__isnull=True).values_list(
            "stock", "threshold"
        )
    ) == [(2, 5)]


def test_threshold_lowered_to_the_available_stock_of_a_held_product_resolves_its_alert(db):
    """The other way: 10 on hand, 8 held, threshold 5: open; lowered to 2 (not a crossing
    for stock on hand either), the episode ends."""
    seed({"A-1": ("10.00", 10, 5)})
    reservations.reserve("A-1", 8, user=None, reference="r")
    assert StockAlert.objects.filter(sku="A-1", resolved_at__isnull=True).count() == 1
    Product.objects.filter(sku="A-1").update(low_stock_threshold=2)
    assert not StockAlert.objects.filter(sku="A-1", resolved_at__isnull=True).exists()


def test_stock_low_event_of_a_held_product_is_the_same_on_both_routes(operator):
    """A ``stock.low`` event's product stock, for a product with units held, must not
    depend on the route a pipeline step took (SQL route: no product instance)."""
    from django.db.models.signals import pre_save

    from app.models import WebhookEvent, WebhookSubscription
    from app.utils.utils import process_pipeline
    from app.webhooks import outbox
    from tests.pipelines.test_folded import Rollback
    from tests.pipelines.test_staged import outbox_rows, user_pre_save

    seed({"A-1": ("10.00", 6, 4)})
    reservations.reserve("A-1", 1, user=None, reference="r")  # 5 available
    seen = {}
    for route in ("staged", "objects"):
        outbox.forget_subscriptions()
        try:
            with transaction.atomic():
                WebhookSubscription.objects.create(
                    url="https://hooks.example.com/x", events=["stock.low"], secret="s"
                )
                if route == "objects":
                    pre_save.connect(user_pre_save, sender=Product, dispatch_uid="rv.route")
                try:
                    result = process_pipeline(
                        spec({"op": "adjust_stock", "deltas": {"A-1": -2}}), user=operator
                    )
                finally:
                    pre_save.disconnect(sender=Product, dispatch_uid="rv.route")
                assert result["status"] == "succeeded", result
                seen[route] = [
                    (e, re.sub(r"pipeline:\d+", "pipeline:N", json_data))
                    for rows in outbox_rows().values()
                    for e, _, json_data in rows
                    if e == WebhookEvent.STOCK_LOW
                ]
                raise Rollback
        except Rollback:
            pass
    outbox.forget_subscriptions()
    assert seen["staged"], seen
    assert seen["staged"] == seen["objects"]
