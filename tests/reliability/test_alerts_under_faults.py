"""Alerts under concurrency, crashes and outages, with real worker processes."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest
from django.utils import timezone

from app.models import DeliveryStatus, PriceHistory, Product, StockAlert
from tests.factories import ProductFactory
from tests.reliability.conftest import RQ_REDIS_URL, both_task_backends, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_price_changes_form_an_unbroken_history_chain(processes):
    ProductFactory(sku="P-1", price=Decimal("10.00"))
    processes.actors([["change_prices", "P-1", "40", str(seed)] for seed in range(8)])
    rows = list(
        PriceHistory.objects.filter(sku="P-1").order_by("id").values_list("old_price", "new_price")
    )
    assert len(rows) >= 8 * 40 * 0.9  # a random price may repeat the current one: no row then
    assert rows[0][0] == Decimal("10.00")
    for previous, current in itertools.pairwise(rows):
        assert current[0] == previous[1]
    assert rows[-1][1] == Product.objects.get(sku="P-1").price


@both_task_backends
def test_concurrent_drops_open_exactly_one_alert_and_one_email(processes, smtp_server):
    ProductFactory(sku="D-1", name="Drill", stock=12)
    processes.actors([["drop_stock", "D-1"] for _ in range(10)])
    assert Product.objects.get(sku="D-1").stock == 2
    assert StockAlert.objects.filter(sku="D-1").count() == 1
    worker = processes.worker()
    wait_until(lambda: len(smtp_server.messages) >= 1, message="the alert e-mail")
    wait_until(lambda: StockAlert.objects.get(sku="D-1").delivery_status == DeliveryStatus.SENT)
    processes.stop(worker)
    assert [m["Subject"] for m in smtp_server.messages] == ["Low Stock Alert: Drill"]


@both_task_backends
def test_worker_killed_mid_delivery_is_delivered_exactly_once_after_restart(processes, smtp_server):
    smtp_server.handler.stall = True
    processes.actors([["create_low_product", "K-1"]])
    alert = StockAlert.objects.get(sku="K-1")
    worker = processes.worker(STOCKPIPE_DELIVERY_LEASE="2")
    assert smtp_server.handler.stalled.wait(60), "worker never reached the SMTP server"
    processes.kill(worker)  # with RQ, the job's forked work horse too
    smtp_server.handler.stall = False
    smtp_server.handler.release.set()
    alert.refresh_from_db()
    assert alert.delivery_status == DeliveryStatus.PENDING and alert.attempts == 1
    assert smtp_server.messages == []
    # After the lease runs out, the sweeper re-enqueues it and a fresh worker delivers it.
    wait_until(
        lambda: timezone.now() > StockAlert.objects.get(pk=alert.pk).next_attempt_at, timeout=10
    )
    processes.manage("deliver_pending")
    worker = processes.worker(STOCKPIPE_DELIVERY_LEASE="2")
    wait_until(lambda: StockAlert.objects.get(pk=alert.pk).delivery_status == DeliveryStatus.SENT)
    processes.manage("deliver_pending")  # a second sweep finds nothing to send
    processes.stop(worker)
    assert len(smtp_server.messages) == 1


@both_task_backends
def test_smtp_down_then_up_delivers_every_pending_alert_once(processes, smtp_server):
    smtp_server.stop()
    processes.actors([["create_low_product", f"S-{i}"] for i in range(5)])
    worker = processes.worker()
    wait_until(
        lambda: all(a.attempts >= 2 for a in StockAlert.objects.all()),
        message="retries while the server is down",
    )
    assert set(StockAlert.objects.values_list("delivery_status", flat=True)) == {"pending"}
    smtp_server.start()
    wait_until(
        lambda: set(StockAlert.objects.values_list("delivery_status", flat=True)) == {"sent"},
        message="delivery after the server came back",
    )
    processes.stop(worker)
    subjects = sorted(m["Subject"] for m in smtp_server.messages)
    assert subjects == sorted(f"Low Stock Alert: Product S-{i}" for i in range(5))


@pytest.mark.parametrize("task_backend", ["rq"])
def test_redis_rq_backend_delivers_alerts_with_a_real_rq_worker(processes, smtp_server):
    import redis

    processes.actors([["create_low_product", "R-1"]])
    assert redis.Redis.from_url(RQ_REDIS_URL).llen("rq:queue:default") == 1
    processes.manage("rqworker", "default", "--burst", "--job-class", "django_tasks_rq.backend.Job")
    assert StockAlert.objects.get(sku="R-1").delivery_status == DeliveryStatus.SENT
    assert [m["Subject"] for m in smtp_server.messages] == ["Low Stock Alert: Product R-1"]
