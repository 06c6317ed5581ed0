"""Subscriptions changed in another process reach this one at once through the shared cache.

Each process remembers which subscriptions exist (``outbox.subscribers``). With Redis as the
cache, a committed change bumps a version key that every process reads (from its near cache)
before trusting what it remembers, so no event of a later change is written without the new
subscription, or with a disabled one. The time bound is set to an hour here so that only the
version can make these tests pass.
"""

from __future__ import annotations

import pytest
import redis

from app.models import Product, WebhookDelivery, WebhookSubscription
from app.webhooks import outbox
from tests.conftest import redis_test_url
from tests.reliability.conftest import Processes

REDIS = redis_test_url("webhooks")
CREATED = "product.created"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def shared_cache(settings):
    redis.Redis.from_url(REDIS).flushdb()
    settings.CACHES = {"default": {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": REDIS}}
    settings.STOCKPIPE_WEBHOOK_SUBSCRIPTION_CACHE = 3600.0
    yield
    redis.Redis.from_url(REDIS).flushdb()


@pytest.fixture
def elsewhere(tmp_path):
    """Run Python in another process of the project, sharing the database and the cache."""
    processes = Processes(tmp_path)

    def run(code: str) -> str:
        return processes.manage(
            "shell",
            "-c",
            "from app.webhooks import services; from app.models import WebhookSubscription\n"
            + code,
            CACHE_URL=REDIS,
            STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS="true",
        ).splitlines()[-1]  # after the shell's note on its automatic imports

    return run


def test_a_subscription_created_elsewhere_gets_the_next_event(shared_cache, elsewhere):
    assert outbox.subscribers(CREATED) == ()  # remembered here: nobody subscribed
    pk = int(
        elsewhere(
            "print(services.create_subscription("
            "url='http://127.0.0.1:9/hook', events=['product.created']).pk)"
        )
    )
    assert outbox.subscribers(CREATED) == (pk,)
    product = Product.objects.create(sku="LAMP", name="Lamp", price="9.50", stock=10)
    row = WebhookDelivery.objects.get()
    assert (row.subscription_id, row.event_type, row.data["product"]["id"]) == (
        pk,
        CREATED,
        product.pk,
    )


def test_a_subscription_disabled_elsewhere_gets_no_further_event(shared_cache, elsewhere):
    pk = int(
        elsewhere(
            "print(services.create_subscription("
            "url='http://127.0.0.1:9/hook', events=['product.created']).pk)"
        )
    )
    Product.objects.create(sku="LAMP", name="Lamp", price="9.50", stock=10)
    assert WebhookDelivery.objects.count() == 1
    elsewhere(
        f"services.update_subscription(WebhookSubscription.objects.get(pk={pk}), is_active=False)"
    )
    Product.objects.create(sku="DESK", name="Desk", price="99.00", stock=10)
    assert WebhookDelivery.objects.count() == 1
    assert outbox.subscribers(CREATED) == ()


def test_without_a_shared_cache_the_time_bound_applies(settings, elsewhere):
    """A per-process cache cannot tell other processes; what is remembered stays for the
    configured time (README, Webhooks)."""
    settings.STOCKPIPE_WEBHOOK_SUBSCRIPTION_CACHE = 3600.0
    assert outbox.subscribers(CREATED) == ()
    elsewhere(
        "services.create_subscription(url='http://127.0.0.1:9/hook', events=['product.created'])"
    )
    assert outbox.subscribers(CREATED) == ()
    assert WebhookSubscription.objects.count() == 1
