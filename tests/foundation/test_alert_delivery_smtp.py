"""Alert delivery end to end against a real SMTP server that refuses or goes down."""

import pytest
from django.core.management import call_command

from app.models import DeliveryStatus, StockAlert
from app.services import alerts
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def open_alert(stock=2):
    product = ProductFactory(name="Mouse", stock=10)
    product.stock = stock
    product.save()
    return StockAlert.objects.get(product=product)


def test_alert_is_delivered_over_smtp_by_the_worker(
    smtp_server, django_capture_on_commit_callbacks, run_worker
):
    with django_capture_on_commit_callbacks(execute=True):
        alert = open_alert()
    run_worker()
    assert len(smtp_server.messages) == 1
    message = smtp_server.messages[0]
    assert message["Subject"] == "Low Stock Alert: Mouse"
    assert message.get_payload().strip() == "Only 2 units remaining"
    assert message["To"] == "manager@company.com"
    assert message["Message-ID"] == f"<stock-alert-{alert.pk}@localhost>"
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.SENT and alert.sent_at is not None


def test_refused_then_accepted_is_retried_and_sent_once(smtp_server, run_worker):
    alert = open_alert()
    smtp_server.handler.refuse_with = "451 4.3.0 Try again later"
    assert alerts.deliver_alert(alert.pk) == "retry"
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.PENDING
    assert alert.attempts == 1 and "451" in alert.last_error
    assert smtp_server.messages == []
    smtp_server.handler.refuse_with = None
    run_worker()  # runs the retry task the failure enqueued
    run_worker()  # nothing left: a second run sends nothing more
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.SENT and alert.attempts == 2
    assert len(smtp_server.messages) == 1


def test_server_down_then_up_delivers_every_pending_alert_once(smtp_server, settings, run_worker):
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    smtp_server.stop()
    first, second = open_alert(), open_alert(stock=1)
    for alert in (first, second):
        assert alerts.deliver_alert(alert.pk) == "retry"
    assert set(StockAlert.objects.values_list("delivery_status", flat=True)) == {"pending"}
    assert alerts.deliver_alert(first.pk) == "skipped"  # not due yet: no hammering
    smtp_server.start()
    StockAlert.objects.update(next_attempt_at=None)  # the backoff has elapsed
    call_command("deliver_pending")
    run_worker()
    call_command("deliver_pending")
    run_worker()
    assert sorted(m["Subject"] for m in smtp_server.messages) == ["Low Stock Alert: Mouse"] * 2
    assert set(StockAlert.objects.values_list("delivery_status", flat=True)) == {"sent"}


def test_lost_enqueue_is_recovered_by_the_sweeper(smtp_server, run_worker):
    alert = open_alert()  # no on_commit callbacks ran: as if the process died after commit
    run_worker()
    assert smtp_server.messages == []
    call_command("deliver_pending")
    run_worker()
    assert len(smtp_server.messages) == 1
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.SENT


def test_gives_up_after_max_attempts_and_can_be_retried(smtp_server, settings, run_worker):
    settings.STOCKPIPE_DELIVERY_MAX_ATTEMPTS = 3
    smtp_server.handler.refuse_with = "554 5.7.1 Rejected"
    alert = open_alert()
    alerts.deliver_alert(alert.pk)
    run_worker()
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.FAILED and alert.attempts == 3
    smtp_server.handler.refuse_with = None
    assert alerts.retry_failed([alert.pk]) == 1
    alerts.enqueue_delivery([alert.pk])
    run_worker()
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.SENT
    assert len(smtp_server.messages) == 1


def test_concurrent_delivery_claims_the_alert_once(smtp_server):
    alert = open_alert()
    assert alerts.deliver_alert(alert.pk) == "sent"
    assert alerts.deliver_alert(alert.pk) == "skipped"
    assert len(smtp_server.messages) == 1
