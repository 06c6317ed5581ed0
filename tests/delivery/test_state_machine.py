"""The one delivery state machine (app/services/delivery.py), driven on real rows of both
models that use it: low-stock alerts and webhook deliveries, whose columns differ."""

from datetime import timedelta

import pytest
from django.utils import timezone

from app.models import StockAlert, WebhookDelivery
from app.services import alerts, delivery
from app.webhooks import services as webhooks
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(params=["alert", "webhook"])
def item(request, subscribe, settings):
    """(track, pk) of one pending row, on a track allowing 4 attempts."""
    settings.STOCKPIPE_DELIVERY_MAX_ATTEMPTS = settings.STOCKPIPE_WEBHOOK_MAX_ATTEMPTS = 4
    if request.param == "alert":
        product = ProductFactory(stock=10)
        product.stock = 1
        product.save()
        return alerts.ALERTS, StockAlert.objects.get().pk
    subscribe(events=["product.created"])
    ProductFactory()
    return webhooks.WEBHOOKS, WebhookDelivery.objects.get().pk


def state(track, pk):
    names = (track.status, track.attempts, track.last_error, track.next_attempt_at)
    return track.model._default_manager.filter(pk=pk).values_list(*names).get()


def test_a_claim_is_exclusive_until_its_lease_runs_out(item, settings):
    track, pk = item
    settings.STOCKPIPE_DELIVERY_LEASE = 60
    now = timezone.now()
    assert delivery.claim(track, pk, now=now) == 1
    assert delivery.claim(track, pk, now=now) is None  # held by the first claim
    assert delivery.claim(track, pk, now=now + timedelta(seconds=59)) is None
    assert delivery.claim(track, pk, now=now + timedelta(seconds=61)) == 2  # holder died
    assert state(track, pk)[3] == now + timedelta(seconds=61 + 60)


def test_failures_back_off_exponentially_up_to_the_ceiling_then_give_up(item, settings):
    track, pk = item
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = 10
    settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 35
    delays = []
    for number in (1, 2, 3):
        assert delivery.claim(track, pk, now=timezone.now() + timedelta(days=number)) == number
        before = timezone.now()
        outcome, retry_at = delivery.record_failure(track, pk, number, OSError("down"))
        assert outcome == "retry" and state(track, pk) == (
            track.pending,
            number,
            "OSError: down",
            retry_at,
        )
        delays.append(round((retry_at - before).total_seconds()))
    assert delays == [10, 20, 35]
    assert delivery.claim(track, pk, now=timezone.now() + timedelta(days=9)) == 4
    assert delivery.record_failure(track, pk, 4, "still down") == (track.given_up, None)
    assert state(track, pk) == (track.given_up, 4, "still down", None)
    assert delivery.claim(track, pk, now=timezone.now() + timedelta(days=99)) is None

    assert delivery.requeue(track, track.model._default_manager.filter(pk=pk)) == 1
    assert state(track, pk) == (track.pending, 0, "still down", None)
    assert delivery.claim(track, pk) == 1
    assert delivery.record_success(track, pk) == track.done
    assert state(track, pk) == (track.done, 1, "", None)


def test_a_permanent_error_gives_up_at_once_and_a_requested_delay_is_capped(item, settings):
    track, pk = item
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = 1
    settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 100
    assert delivery.claim(track, pk) == 1
    before = timezone.now()
    _, retry_at = delivery.record_failure(track, pk, 1, "HTTP 429", not_before=50)
    assert round((retry_at - before).total_seconds()) == 50  # longer than the backoff
    assert delivery.claim(track, pk, now=retry_at) == 2
    _, retry_at = delivery.record_failure(track, pk, 2, "HTTP 429", not_before=10**6)
    assert round((retry_at - before).total_seconds()) == 100  # never past the ceiling
    assert delivery.claim(track, pk, now=retry_at) == 3
    assert delivery.record_failure(track, pk, 3, "HTTP 400", permanent=True)[0] == track.given_up


def test_backoff_is_bounded_for_any_attempt_count(settings):
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = 30
    settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    assert [delivery.backoff(n).total_seconds() for n in (0, 1, 2, 3, 8, 10_000)] == [
        30, 30, 60, 120, 3600, 3600,
    ]  # fmt: skip
