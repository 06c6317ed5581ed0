"""Delivery end to end: a real HTTP receiver on 127.0.0.1, the real task worker."""

import socket
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import transaction

from app.models import Product, WebhookAttempt, WebhookDelivery
from app.webhooks import services
from app.webhooks.signing import verify_signature
from tests.factories import ProductFactory
from tests.webhooks.conftest import SECRET

Status = WebhookDelivery.Status


def set_price(product, price):
    product.price = Decimal(price)
    product.save()


def statuses():
    return list(WebhookDelivery.objects.order_by("pk").values_list("status", flat=True))


@pytest.mark.django_db
def test_delivered_after_commit_signed_with_the_subscription_secret(
    receiver, subscribe, run_worker, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        subscribe(events=["price.changed"])
        product = ProductFactory(price=Decimal("10.00"))
        set_price(product, "12.00")
    assert receiver.requests == []  # nothing is sent inside the transaction
    run_worker()
    [request] = receiver.requests
    headers = request.headers
    assert verify_signature(
        SECRET, headers["X-Stockpipe-Timestamp"], request.body, headers["X-Stockpipe-Signature"]
    )
    assert not verify_signature(
        "wrong-secret",
        headers["X-Stockpipe-Timestamp"],
        request.body,
        headers["X-Stockpipe-Signature"],
    )
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Stockpipe-Event"] == "price.changed"
    delivery = WebhookDelivery.objects.get()
    body = request.json
    assert body["id"] == str(delivery.event_id) == headers["X-Stockpipe-Event-Id"]
    assert body["type"] == "price.changed"
    assert body["data"]["old"] == "10.00" and body["data"]["new"] == "12.00"
    assert body["data"]["product"]["sku"] == product.sku
    assert request.body == services.event_body(delivery)  # the exact bytes that were signed
    assert delivery.status == Status.DELIVERED and delivery.attempts == 1
    assert delivery.last_status_code == 200 and delivery.delivered_at is not None
    [attempt] = WebhookAttempt.objects.all()
    assert attempt.status_code == 200 and attempt.response_body == "answered 200"


@pytest.mark.django_db
def test_retried_after_500s_then_delivered_with_the_same_event(receiver, subscribe, deliver):
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "11.00")
    receiver.statuses = [500, 503]
    deliver()
    assert [r.status for r in receiver.requests] == [500, 503, 200]
    assert len({r.json["id"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.DELIVERED and delivery.attempts == 3
    log = list(delivery.attempt_log.values_list("number", "status_code"))
    assert log == [(1, 500), (2, 503), (3, 200)]


@pytest.mark.django_db
def test_429_is_retried(receiver, subscribe, deliver):
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "11.00")
    receiver.statuses = [429]
    deliver()
    assert [r.status for r in receiver.requests] == [429, 200]
    assert statuses() == [Status.DELIVERED]


@pytest.mark.django_db
def test_400_is_dead_lettered_at_once_and_does_not_block_later_events(receiver, subscribe, deliver):
    subscribe(events=["price.changed"])
    product = ProductFactory()
    set_price(product, "11.00")
    set_price(product, "12.00")
    receiver.statuses = [400]
    deliver()
    deliver()
    assert [(r.status, r.json["data"]["new"]) for r in receiver.requests] == [
        (400, "11.00"),
        (200, "12.00"),
    ]
    dead, delivered = WebhookDelivery.objects.order_by("pk")
    assert dead.status == Status.DEAD and dead.attempts == 1
    assert dead.last_status_code == 400 and dead.last_error == "HTTP 400"
    assert delivered.status == Status.DELIVERED


@pytest.mark.django_db
def test_dead_letter_after_max_attempts_then_redeliver(receiver, subscribe, deliver, settings):
    settings.STOCKPIPE_WEBHOOK_MAX_ATTEMPTS = 3
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "11.00")
    receiver.default = 500
    deliver()
    deliver()  # a dead row is not picked up again
    assert [r.status for r in receiver.requests] == [500, 500, 500]
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.DEAD and delivery.attempts == 3
    receiver.default = 200
    assert services.redeliver([delivery.pk]) == 1
    deliver()
    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED and delivery.attempts == 1
    assert [r.status for r in receiver.requests] == [500, 500, 500, 200]
    assert len({r.json["id"] for r in receiver.requests}) == 1
    assert delivery.attempt_log.count() == 4


@pytest.mark.django_db
def test_network_errors_are_retried_and_logged(subscribe, deliver, settings):
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    subscribe(events=["price.changed"], url=f"http://127.0.0.1:{port}/hooks")
    set_price(ProductFactory(), "11.00")
    deliver()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert delivery.next_attempt_at is not None and "refused" in delivery.last_error.lower()
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and attempt.error == delivery.last_error
    deliver()  # backoff not elapsed: no second attempt
    delivery.refresh_from_db()
    assert delivery.attempts == 1


@pytest.mark.django_db
def test_events_of_one_product_arrive_in_order_and_a_failure_holds_only_its_stream(
    receiver, subscribe, deliver, settings
):
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    subscribe(events=["price.changed"])
    a, b = ProductFactory(sku="A-1"), ProductFactory(sku="B-1")
    for price in ("11.00", "12.00", "13.00"):
        set_price(a, price)
        set_price(b, price)
    failed_once = []

    def respond(body):
        if body["data"]["product"]["sku"] == "A-1" and not failed_once:
            failed_once.append(body["id"])
            return 500
        return None

    receiver.respond = respond
    deliver()
    sent = [
        (r.json["data"]["product"]["sku"], r.json["data"]["new"], r.status)
        for r in receiver.requests
    ]
    assert [s for s in sent if s[0] == "A-1"] == [("A-1", "11.00", 500)]  # A waits for its retry
    assert [s for s in sent if s[0] == "B-1"] == [
        ("B-1", "11.00", 200),
        ("B-1", "12.00", 200),
        ("B-1", "13.00", 200),
    ]
    WebhookDelivery.objects.filter(status=Status.PENDING).update(
        next_attempt_at=None
    )  # time passes
    deliver()
    sent = [
        (r.json["data"]["product"]["sku"], r.json["data"]["new"], r.status)
        for r in receiver.requests
    ]
    assert [s for s in sent if s[0] == "A-1"] == [
        ("A-1", "11.00", 500),
        ("A-1", "11.00", 200),
        ("A-1", "12.00", 200),
        ("A-1", "13.00", 200),
    ]
    assert set(statuses()) == {Status.DELIVERED}


@pytest.mark.django_db
def test_a_claimed_head_is_not_sent_twice_nor_overtaken(receiver, subscribe):
    subscribe(events=["price.changed"])
    product = ProductFactory()
    set_price(product, "11.00")
    set_price(product, "12.00")
    first = WebhookDelivery.objects.order_by("pk").first()
    # Another worker holds the head's lease: this worker neither re-sends it nor skips ahead.
    services.deliver_stream(first.subscription_id, first.stream)  # delivers both
    assert len(receiver.requests) == 2
    set_price(product, "13.00")
    head = WebhookDelivery.objects.filter(status=Status.PENDING).get()
    WebhookDelivery.objects.filter(pk=head.pk).update(
        next_attempt_at=head.created_at.replace(year=2999)
    )
    set_price(product, "14.00")
    outcome = services.deliver_stream(head.subscription_id, head.stream)
    assert outcome == {"waiting": 1}
    assert len(receiver.requests) == 2


@pytest.mark.django_db
def test_lost_enqueue_is_recovered_by_the_sweeper(receiver, subscribe, run_worker):
    subscribe(events=["product.created"])
    ProductFactory()  # committed, but no on_commit ran: as if the process died after commit
    run_worker()
    assert receiver.requests == []
    call_command("deliver_pending")
    run_worker()
    assert [r.json["type"] for r in receiver.requests] == ["product.created"]


@pytest.mark.django_db
def test_inactive_subscription_holds_its_deliveries_until_reactivated(
    receiver, subscribe, deliver, django_capture_on_commit_callbacks
):
    subscription = subscribe(events=["product.created"])
    ProductFactory()
    subscription.is_active = False
    subscription.save()
    deliver()
    assert receiver.requests == [] and statuses() == [Status.PENDING]
    with django_capture_on_commit_callbacks(execute=True):
        services.update_subscription(subscription, is_active=True)
    deliver()
    assert len(receiver.requests) == 1 and statuses() == [Status.DELIVERED]


@pytest.mark.django_db
def test_pipeline_run_events_are_delivered(receiver, subscribe, deliver):
    from app.pipelines.service import process_pipeline

    subscribe()
    result = process_pipeline(
        {
            "steps": [
                {
                    "op": "upsert_products",
                    "rows": [{"sku": "PL-1", "name": "P", "price": "5.00", "stock": 9}],
                },
                {"op": "set_prices", "prices": {"PL-1": "6.00"}},
                {"op": "adjust_stock", "deltas": {"PL-1": -7}},
            ]
        }
    )
    deliver()
    types = [
        r.json["type"]
        for r in receiver.requests
        if r.json["data"].get("product", {}).get("sku") == "PL-1"
    ]
    assert types == [
        "product.created",
        "product.updated",
        "price.changed",
        "product.updated",
        "stock.low",
    ]
    [finished] = receiver.bodies("pipeline.finished")
    assert finished["data"]["run"]["id"] == result["run_id"]
    assert finished["data"]["run"]["status"] == "succeeded"
    assert finished["data"]["run"]["totals"]["price_changes"] == 1


@pytest.mark.django_db(transaction=True)
def test_real_commit_enqueues_and_real_rollback_sends_nothing(receiver, subscribe, run_worker):
    subscribe(events=["price.changed", "product.created"])
    with pytest.raises(RuntimeError), transaction.atomic():
        product = ProductFactory(sku="RB-1")
        set_price(product, "99.00")
        raise RuntimeError("rolled back")
    assert not Product.objects.filter(sku="RB-1").exists()
    assert WebhookDelivery.objects.count() == 0
    with transaction.atomic():
        product = ProductFactory(sku="OK-1")
        set_price(product, "12.00")
    run_worker()  # no sweeper: the after-commit enqueue alone delivers
    assert [(r.json["type"], r.json["data"]["product"]["sku"]) for r in receiver.requests] == [
        ("product.created", "OK-1"),
        ("price.changed", "OK-1"),
    ]
    assert statuses() == [Status.DELIVERED, Status.DELIVERED]


@pytest.mark.django_db
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_private_destinations_are_refused_before_anything_is_sent(
    receiver, subscribe, deliver, settings, scheme
):
    """SSRF: the resolved address is checked before connecting (and the connection goes to
    that address, so DNS rebinding cannot dodge it): nothing of the request, or of a TLS
    handshake, goes out; the row is dead at once."""
    settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    subscribe(events=["price.changed"], url=receiver.url.replace("http", scheme, 1))
    set_price(ProductFactory(), "11.00")
    deliver()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.DEAD and delivery.attempts == 1
    assert "refused to connect to 127.0.0.1: not a public address" in delivery.last_error
    assert receiver.requests == []
    if scheme == "http":  # once allowed, the dead row can be redelivered by hand
        settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
        assert services.redeliver([delivery.pk]) == 1
        deliver()
        delivery.refresh_from_db()
        assert delivery.status == Status.DELIVERED and len(receiver.requests) == 1
