"""Issue 12, finding 3: one alert that cannot be built or sent never starves the others.

Real SMTP server (tests/smtp.py), real task worker. An error while loading, building or
sending one alert is a failed attempt of that alert: recorded, retried with backoff, given
up after STOCKPIPE_DELIVERY_MAX_ATTEMPTS; the other alerts of its batch are still sent.
"""

import pytest
from django.core.management import call_command
from django.utils import timezone

from app.models import DeliveryStatus, StockAlert
from app.services import alerts
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def open_alert(name):
    product = ProductFactory(name=name, stock=10)
    product.stock = 2
    product.save()
    return StockAlert.objects.get(product=product)


def test_line_breaks_in_a_legacy_name_do_not_stop_its_alert_nor_the_batch(smtp_server, run_worker):
    first, legacy, last = open_alert("Keyboard"), open_alert("Widget"), open_alert("Mouse")
    # Written before names were checked: the e-mail library refuses this in a Subject.
    StockAlert.objects.filter(pk=legacy.pk).update(name="Widget\r\nBlue\x0b\tedition\u2028")
    alerts.enqueue_delivery([first.pk, legacy.pk, last.pk])
    run_worker()
    assert sorted(m["Subject"] for m in smtp_server.messages) == [
        "Low Stock Alert: Keyboard",
        "Low Stock Alert: Mouse",
        "Low Stock Alert: Widget Blue edition",
    ]
    rows = StockAlert.objects.values_list("delivery_status", "attempts", "last_error")
    assert set(rows) == {(DeliveryStatus.SENT, 1, "")}


def test_an_alert_that_cannot_be_built_fails_alone_then_gives_up(
    smtp_server, run_worker, settings, corrupt
):
    settings.STOCKPIPE_DELIVERY_MAX_ATTEMPTS = 3
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    bad, saw, hammer = open_alert("Drill"), open_alert("Saw"), open_alert("Hammer")
    corrupt(bad, "opened_at")  # the row cannot be read: building its message raises
    alerts.enqueue_delivery([bad.pk, saw.pk, hammer.pk])
    run_worker()
    assert sorted(m["Subject"] for m in smtp_server.messages) == [
        "Low Stock Alert: Hammer",
        "Low Stock Alert: Saw",
    ]
    status, attempts, error, retry_at = (
        StockAlert.objects.filter(pk=bad.pk)
        .values_list("delivery_status", "attempts", "last_error", "next_attempt_at")
        .get()
    )
    assert (status, attempts) == (DeliveryStatus.PENDING, 1)
    assert error.startswith(("ValueError: ", "DataError: ")), error
    assert retry_at > timezone.now()  # backs off like any failed attempt

    # Time passes; the retries fail the same way until the alert gives up.
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 0
    StockAlert.objects.filter(pk=bad.pk).update(next_attempt_at=None)
    call_command("deliver_pending")
    run_worker()
    status, attempts, last_error, retry_at = (
        StockAlert.objects.filter(pk=bad.pk)
        .values_list("delivery_status", "attempts", "last_error", "next_attempt_at")
        .get()
    )
    assert (status, attempts, last_error, retry_at) == (DeliveryStatus.FAILED, 3, error, None)
    assert len(smtp_server.messages) == 2
    others = StockAlert.objects.exclude(pk=bad.pk).values_list("delivery_status", "attempts")
    assert set(others) == {(DeliveryStatus.SENT, 1)}


@pytest.mark.parametrize(
    ("name", "subject"),
    [
        ("Plain name", "Plain name"),
        ("Two\nlines", "Two lines"),
        ("Windows\r\n\r\nbreaks", "Windows breaks"),
        ("Tab\tand\x1bescape", "Tab and escape"),
        ("Unicode\u2028line\u2029breaks\x85", "Unicode line breaks"),
        ("  \n Édition été \n", "Édition été"),
    ],
)
def test_the_subject_is_one_line_whatever_the_name(name, subject):
    assert alerts.header_text(name) == subject
