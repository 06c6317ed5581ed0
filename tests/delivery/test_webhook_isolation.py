"""Issue 12, finding 3 for webhooks: a delivery that cannot be built or sent is a failed
attempt of that delivery (logged, retried, dead-lettered after the maximum), and the other
streams of the same task are still delivered. Real receiver, real task worker."""

from decimal import Decimal

import pytest

from app.models import WebhookDelivery
from app.webhooks import services
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
Status = WebhookDelivery.Status


def set_price(product, price):
    product.price = Decimal(price)
    product.save()


def test_an_event_that_cannot_be_built_fails_alone_and_its_stream_resumes_after_it_dies(
    receiver, subscribe, deliver, run_worker, settings, corrupt
):
    settings.STOCKPIPE_WEBHOOK_MAX_ATTEMPTS = 3
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    subscription = subscribe(events=["price.changed"])
    broken, b, c = (ProductFactory(sku=sku) for sku in ("A-1", "B-1", "C-1"))
    for product in (broken, b, c):
        set_price(product, "11.00")
    bad = WebhookDelivery.objects.get(stream=f"product:{broken.pk}")
    corrupt(bad, "data")  # its payload cannot be read back, so no body can be built
    services.enqueue_streams(
        [(subscription.pk, f"product:{p.pk}") for p in (broken, b, c)]  # the bad one first
    )
    run_worker()
    assert sorted(r.json["data"]["product"]["sku"] for r in receiver.requests) == ["B-1", "C-1"]
    status, attempts, error = (
        WebhookDelivery.objects.filter(pk=bad.pk)
        .values_list("status", "attempts", "last_error")
        .get()
    )
    assert (status, attempts) == (Status.PENDING, 1)
    assert error.startswith("ValueError: Exceeds the limit"), error
    assert list(bad.attempt_log.values_list("number", "status_code", "error")) == [(1, None, error)]

    set_price(broken, "12.00")  # a later event of the same product waits behind the head
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 0
    WebhookDelivery.objects.filter(pk=bad.pk).update(next_attempt_at=None)  # time passes
    deliver()
    status, attempts = (
        WebhookDelivery.objects.filter(pk=bad.pk).values_list("status", "attempts").get()
    )
    assert (status, attempts) == (Status.DEAD, 3)
    assert bad.attempt_log.count() == 3
    sent = [(r.json["data"]["product"]["sku"], r.json["data"]["new"]) for r in receiver.requests]
    assert sorted(sent) == [("A-1", "12.00"), ("B-1", "11.00"), ("C-1", "11.00")]
