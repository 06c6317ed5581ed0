import base64
import io

import pytest
from django.core.management import call_command

from app.models import WebhookEvent
from app.webhooks import outbox, services
from tests.webhooks.receiver import WebhookReceiver

# The Standard Webhooks form: whsec_ + base64 of 32 bytes (the key).
SECRET = "whsec_" + base64.b64encode(b"stockpipe-test-webhook-secret-32").decode()
ALL_EVENTS = list(WebhookEvent.values)


@pytest.fixture(autouse=True)
def _fresh_subscription_cache():
    """The subscription cache is per process; no test may see another test's subscriptions."""
    outbox.forget_subscriptions()
    yield
    outbox.forget_subscriptions()


@pytest.fixture
def receiver():
    """Verifies every request with the standardwebhooks package and ``SECRET`` (the secret
    ``subscribe`` uses); set ``receiver.secret`` for another subscription's secret."""
    server = WebhookReceiver(secret=SECRET)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def subscribe(db, receiver):
    def make(events=None, url=None, secret=SECRET, **kwargs):
        return services.create_subscription(
            url=url or receiver.url, events=events or ALL_EVENTS, secret=secret, **kwargs
        )

    return make


@pytest.fixture
def deliver(run_worker):
    """Sweep the outbox (as cron would) and run the real task worker until it is idle."""

    def run() -> None:
        call_command("deliver_pending", stdout=io.StringIO())
        run_worker()

    return run
