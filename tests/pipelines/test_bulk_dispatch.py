"""The bulk writers' fast path: taken only when no receiver outside the project listens,
and with the same effects as per-object dispatch (the identity property test runs both;
these cover the switch itself and the webhook outbox, which has subscriptions here)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import transaction
from django.db.models.signals import post_save, pre_save

from app import receivers
from app.models import PriceHistory, Product, WebhookDelivery, WebhookEvent
from app.services.context import change_context
from app.tracking import adapters
from app.utils.utils import process_pipeline
from app.webhooks import outbox, services

pytestmark = pytest.mark.django_db


def user_receiver(sender, instance, **kwargs):
    user_receiver.seen.append(instance.sku)


user_receiver.seen = []


@pytest.mark.parametrize("signal", [pre_save, post_save])
def test_a_user_receiver_turns_the_fast_path_off_for_its_signal(signal):
    assert adapters.saves_are_bulk()
    signal.connect(user_receiver, sender=Product, dispatch_uid="test.user_receiver")
    try:
        assert adapters.bulk_forms(signal) is None
        assert not adapters.saves_are_bulk()
        Product.objects.create(sku="U-1", name="U", price=Decimal("1.00"), stock=1)
        user_receiver.seen.clear()
        process_pipeline({"steps": [{"op": "set_prices", "prices": {"U-1": "2.00"}}]})
        assert user_receiver.seen == ["U-1"]  # called per object, as save() would
    finally:
        signal.disconnect(sender=Product, dispatch_uid="test.user_receiver")
    assert adapters.saves_are_bulk()


def test_a_project_receiver_connected_twice_is_called_twice():
    post_save.connect(
        receivers.product_post_save, sender=Product, dispatch_uid="test.second_connection"
    )
    try:
        assert adapters.bulk_forms(post_save) is None
    finally:
        post_save.disconnect(sender=Product, dispatch_uid="test.second_connection")
    assert adapters.bulk_forms(post_save) is not None


def test_receivers_for_another_model_do_not_matter():
    from app.models import StockAlert

    post_save.connect(user_receiver, sender=StockAlert, dispatch_uid="test.other_model")
    try:
        assert adapters.saves_are_bulk()
    finally:
        post_save.disconnect(sender=StockAlert, dispatch_uid="test.other_model")


class Rollback(Exception):
    pass


VARYING = {"id", "opened_at", "resolved_at"}  # differ between the two rolled-back routes


def comparable(value):
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VARYING}
    return value


def outbox_rows() -> dict[str, list[tuple]]:
    """Outbox rows per stream (a product), in order: the order webhooks are delivered in."""
    sku_of = {f"product:{pk}": sku for pk, sku in Product.objects.values_list("pk", "sku")}
    streams: dict[str, list[tuple]] = {}
    for row in WebhookDelivery.objects.exclude(event_type=WebhookEvent.PIPELINE_FINISHED).order_by(
        "id"
    ):
        streams.setdefault(sku_of[row.stream], []).append(
            (row.subscription_id, row.event_type, comparable(row.data))
        )
    return streams


def test_outbox_rows_equal_per_object_save_when_subscribed(operator):
    """With subscriptions the outbox receiver runs per object inside the fast path: each
    product's stream of rows equals that of one save() per change."""
    outbox.forget_subscriptions()
    services.create_subscription(url="http://127.0.0.1:9/hook", events=list(WebhookEvent.values))
    spec = {
        "steps": [
            {"op": "set_prices", "prices": {"W-1": "5.00", "W-2": "6.00"}},
            {"op": "adjust_stock", "deltas": {"W-1": -4, "W-2": 3}},
        ]
    }
    seen = {}
    for route in ("pipeline", "reference"):
        try:
            with transaction.atomic():
                for sku in ("W-1", "W-2"):
                    Product.objects.create(
                        sku=sku, name=sku, price=Decimal("1.00"), stock=5, low_stock_threshold=3
                    )
                WebhookDelivery.objects.all().delete()
                if route == "pipeline":
                    assert adapters.saves_are_bulk()
                    result = process_pipeline(spec, user=operator)
                    assert result["status"] == "succeeded", result
                    source = f"pipeline:{result['run_id']}"
                else:
                    with change_context(user=operator, source=source):
                        for sku, price in spec["steps"][0]["prices"].items():
                            product = Product.objects.get(sku=sku)
                            product.price = Decimal(price)
                            product.save()
                        for sku, delta in spec["steps"][1]["deltas"].items():
                            product = Product.objects.get(sku=sku)
                            product.stock += delta
                            product.save()
                seen[route] = (
                    outbox_rows(),
                    list(PriceHistory.objects.values_list("sku", "old_price", "new_price")),
                )
                raise Rollback
        except Rollback:
            pass
    events = [row[1] for rows in seen["pipeline"][0].values() for row in rows]
    assert WebhookEvent.PRICE_CHANGED in events and WebhookEvent.STOCK_LOW in events
    assert seen["pipeline"] == seen["reference"]
    outbox.forget_subscriptions()
