"""``manage.py prune``: what the retention policy removes, and what it must keep."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.db.models import Sum
from django.db.models.signals import post_save
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from app import tasks
from app.models import (
    DeletionAudit,
    Location,
    PipelineRun,
    PriceHistory,
    Product,
    StockMovement,
    WebhookDelivery,
    WebhookSubscription,
)
from app.models.webhooks import WebhookAttempt
from app.services import omnibus
from app.services.retention import RetentionPolicy, prune
from app.services.stock import adjust_stock
from app.utils.utils import process_pipeline

pytestmark = pytest.mark.django_db
NOW = timezone.now()
KEEP_ALL = dict.fromkeys(
    ("outbox_days", "task_result_days", "run_payload_days", "price_history_days", "ledger_days",
     "audit_days"),
)  # fmt: skip


def policy(**days) -> RetentionPolicy:
    return RetentionPolicy(**{**KEEP_ALL, **days})


def days_ago(n: float):
    return NOW - timedelta(days=n)


def delivery(subscription, status, delivered_days_ago=None, created_days_ago=40):
    row = WebhookDelivery.objects.create(
        subscription=subscription,
        event_type="price.changed",
        stream="product:1",
        data={},
        created_at=days_ago(created_days_ago),
        status=status,
        delivered_at=None if delivered_days_ago is None else days_ago(delivered_days_ago),
    )
    WebhookAttempt.objects.create(delivery=row, number=1, attempted_at=row.created_at)
    return row


def test_delivered_outbox_rows_go_after_their_days_pending_and_dead_ones_stay():
    sub = WebhookSubscription.objects.create(url="http://127.0.0.1:9/h", events=["price.changed"])
    old = delivery(sub, WebhookDelivery.Status.DELIVERED, delivered_days_ago=31)
    recent = delivery(sub, WebhookDelivery.Status.DELIVERED, delivered_days_ago=29)
    pending = delivery(sub, WebhookDelivery.Status.PENDING)
    dead = delivery(sub, WebhookDelivery.Status.DEAD)

    assert prune(policy(outbox_days=30), now=NOW, dry_run=True)["webhook deliveries"] == 1
    assert WebhookDelivery.objects.count() == 4  # a dry run deletes nothing

    assert prune(policy(outbox_days=30), now=NOW)["webhook deliveries"] == 1
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == {
        recent.pk,
        pending.pk,
        dead.pk,
    }
    assert not WebhookAttempt.objects.filter(delivery_id=old.pk).exists()
    assert WebhookAttempt.objects.count() == 3


def test_finished_task_results_go_queued_ones_stay():
    done = tasks.send_welcome_email.enqueue(user_id=0)
    queued = tasks.send_welcome_email.enqueue(user_id=0)
    DBTaskResult.objects.filter(id=done.id).update(
        status="SUCCESSFUL", started_at=days_ago(15), finished_at=days_ago(15)
    )
    DBTaskResult.objects.filter(id=queued.id).update(enqueued_at=days_ago(20))

    assert prune(policy(task_result_days=14), now=NOW)["task results"] == 1
    assert [str(pk) for pk in DBTaskResult.objects.values_list("id", flat=True)] == [queued.id]


def test_old_finished_runs_lose_their_payload_and_keep_their_record(client, django_user_model):
    finished = PipelineRun.objects.create(
        spec={"steps": [{"op": "set_prices", "prices": {"A": "1.00"}}]},
        status=PipelineRun.Status.SUCCEEDED,
        result={"steps": [{"op": "set_prices", "updated": 1}]},
        rows_total=1,
        rows_done=1,
        finished_at=days_ago(91),
    )
    running = PipelineRun.objects.create(
        spec={"steps": []}, status=PipelineRun.Status.RUNNING, started_at=days_ago(100)
    )
    recent = PipelineRun.objects.create(
        spec={"steps": []}, status=PipelineRun.Status.FAILED, finished_at=days_ago(89)
    )

    assert prune(policy(run_payload_days=90), now=NOW)["pipeline run payloads"] == 1
    finished.refresh_from_db()
    assert (finished.spec, finished.result, finished.payload_pruned_at) == ({}, None, NOW)
    assert (finished.status, finished.rows_done) == (PipelineRun.Status.SUCCEEDED, 1)
    assert PipelineRun.objects.get(pk=running.pk).spec == {"steps": []}
    assert PipelineRun.objects.get(pk=recent.pk).payload_pruned_at is None
    # Pruning again finds nothing new.
    assert prune(policy(run_payload_days=90), now=NOW)["pipeline run payloads"] == 0

    admin = django_user_model.objects.create_superuser("root", "root@example.com", "pw-1-root")
    client.force_login(admin)
    page = client.get(f"/pipelines/runs/{finished.pk}/")
    assert "removed by the retention policy" in page.content.decode()


def random_history(rng: random.Random, product: Product) -> None:
    """A price path over the last 120 days, with reductions, steps and rises."""
    price = Decimal(rng.randint(50, 200))
    at = days_ago(120)
    while True:
        at += timedelta(days=rng.choice([1, 5, 12, 25, 29, 31, 45]), hours=rng.randint(0, 23))
        if at >= NOW:
            return
        new = max(Decimal(1), price + Decimal(rng.choice([-30, -10, -5, 5, 20])))
        PriceHistory.objects.create(
            product=product,
            sku=product.sku,
            name=product.name,
            old_price=price,
            new_price=new,
            changed_at=at,
        )
        price = new


def test_price_history_stays_by_default_and_never_inside_the_omnibus_window():
    rng = random.Random(20261204)
    products = [
        Product.objects.create(sku=f"OMNI-{i}", name=f"Omni {i}", price=Decimal(1), stock=1)
        for i in range(60)
    ]
    PriceHistory.objects.all().delete()
    for product in products:
        random_history(rng, product)
    before = {p.pk: omnibus.current_reduction(p.pk, NOW) for p in products}
    assert sum(r is not None for r in before.values()) >= 5  # the path makes reductions
    total = PriceHistory.objects.count()
    last_30_days = set(
        PriceHistory.objects.filter(changed_at__gte=days_ago(30)).values_list("pk", flat=True)
    )

    assert prune(policy(), now=NOW)["price history"] == 0
    # Asked for 0 days: still nothing within 30 days, nor in any current reduction's window.
    removed = prune(policy(price_history_days=0), now=NOW)["price history"]
    assert 0 < removed < total
    assert last_30_days <= set(PriceHistory.objects.values_list("pk", flat=True))
    after = {p.pk: omnibus.current_reduction(p.pk, NOW) for p in products}
    assert after == before
    kept_old = PriceHistory.objects.filter(changed_at__lt=days_ago(30))
    assert kept_old.exists()  # some reductions reach back past 30 days; their windows stay
    assert set(kept_old.values_list("product_id", flat=True)) <= {
        pk for pk, reduction in before.items() if reduction is not None
    }


def test_old_ledger_rows_fold_into_one_carried_forward_row_per_product():
    kept = Product.objects.create(sku="L-1", name="Ledger 1", price=Decimal(1), stock=10)
    gone = Product.objects.create(sku="L-2", name="Ledger 2", price=Decimal(1), stock=3)
    for delta in (5, -2, 7):
        adjust_stock(kept, delta, user=None, reason="")
    gone.delete()
    StockMovement.objects.update(created_at=days_ago(40))
    adjust_stock(kept, -1, user=None, reason="")  # a recent movement stays as it is
    kept.refresh_from_db()

    assert prune(policy(), now=NOW)["stock ledger"] == 0
    assert prune(policy(ledger_days=30), now=NOW, dry_run=True)["stock ledger"] == 5
    assert StockMovement.objects.count() == 6

    assert prune(policy(ledger_days=30), now=NOW)["stock ledger"] == 5
    rows = list(StockMovement.objects.order_by("created_at", "id"))
    assert [(r.reason, r.delta, r.stock_after) for r in rows] == [
        ("carried forward", 20, 20),
        ("", -1, 19),
    ]
    assert rows[0].product_id == kept.pk and rows[0].created_at == days_ago(40)
    total = StockMovement.objects.filter(product=kept).aggregate(s=Sum("delta"))["s"]
    assert total == kept.stock == 19
    # Idempotent: the carried-forward row is not folded again.
    assert prune(policy(ledger_days=30), now=NOW)["stock ledger"] == 0
    assert StockMovement.objects.count() == 2


def test_deletion_audit_goes_only_when_asked():
    Product.objects.create(sku="A-1", name="Audited", price=Decimal(1), stock=1).delete()
    DeletionAudit.objects.update(deleted_at=days_ago(400))
    assert prune(policy(), now=NOW)["deletion audit"] == 0
    assert prune(policy(audit_days=365), now=NOW)["deletion audit"] == 1
    assert not DeletionAudit.objects.exists()


def test_the_command_reports_counts_and_refuses_negative_days(settings):
    settings.STOCKPIPE_RETAIN_AUDIT_DAYS = 1
    Product.objects.create(sku="C-1", name="Cmd", price=Decimal(1), stock=1).delete()
    DeletionAudit.objects.update(deleted_at=days_ago(2))
    out = StringIO()
    call_command("prune", "--dry-run", stdout=out)
    assert "deletion audit: would remove 1" in out.getvalue()
    assert DeletionAudit.objects.count() == 1
    call_command("prune", "--audit-days", "3", stdout=out)
    assert DeletionAudit.objects.count() == 1  # the flag overrides the setting
    call_command("prune", stdout=out)
    assert DeletionAudit.objects.count() == 0
    with pytest.raises(CommandError, match="ledger_days: days must be 0 or more"):
        call_command("prune", "--ledger-days", "-1")


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_prune_during_a_running_pipeline_removes_nothing_it_needs():
    """The pipeline is held mid-run (a user receiver waits) while a prune with every
    retention at 0 days runs; the run then finishes with its spec, result and history."""
    Product.objects.create(sku="RUN-1", name="Running", price=Decimal("10.00"), stock=5)
    PriceHistory.objects.update(changed_at=days_ago(60))
    StockMovement.objects.update(created_at=days_ago(60))
    entered, release = threading.Event(), threading.Event()

    def hold(sender, instance, **kwargs):
        entered.set()
        assert release.wait(30)

    outcome = {}

    def run():
        try:
            outcome["result"] = process_pipeline(
                {
                    "steps": [
                        {"op": "set_prices", "prices": {"RUN-1": "8.00"}},
                        {"op": "adjust_stock", "deltas": {"RUN-1": -2}},
                    ]
                }
            )
        finally:
            connection.close()

    post_save.connect(hold, sender=Product, dispatch_uid="test.retention.hold")
    worker = threading.Thread(target=run)
    try:
        worker.start()
        assert entered.wait(30)
        zero = {name: 0 for name in KEEP_ALL}
        prune(RetentionPolicy(**zero))
    finally:
        release.set()
        worker.join(60)
        post_save.disconnect(sender=Product, dispatch_uid="test.retention.hold")

    result = outcome["result"]
    assert result["status"] == "succeeded", result
    run_record = PipelineRun.objects.get(pk=result["run_id"])
    assert run_record.payload_pruned_at is None and run_record.spec["steps"]
    assert run_record.result is not None
    product = Product.objects.get(sku="RUN-1")
    assert (product.price, product.stock) == (Decimal("8.00"), 3)
    assert PriceHistory.objects.filter(product=product, new_price=Decimal("8.00")).exists()
    assert StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"] == 3


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_prunes_at_once_fold_each_ledger_row_once():
    products = [
        Product.objects.create(sku=f"TWICE-{i}", name="Twice", price=Decimal(1), stock=i)
        for i in range(1, 301)
    ]
    for product in products:
        adjust_stock(product, 2, user=None, reason="")
    StockMovement.objects.update(created_at=days_ago(40))
    start = threading.Barrier(2)
    removed = []

    def pruner():
        try:
            start.wait(10)
            removed.append(prune(policy(ledger_days=30), now=NOW)["stock ledger"])
        finally:
            connection.close()

    workers = [threading.Thread(target=pruner) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
    assert sum(removed) == 600
    assert StockMovement.objects.count() == 300
    for product in Product.objects.all():
        ledger = StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"]
        assert ledger == product.stock


def test_ledger_rows_fold_per_location_and_only_once():
    north = Location.objects.create(code="NORTH", name="North")
    product = Product.objects.create(sku="LOC-1", name="Two places", price=Decimal(1), stock=4)
    adjust_stock(product, 6, user=None, reason="", location="NORTH")
    adjust_stock(product, -1, user=None, reason="", location="NORTH")
    adjust_stock(product, 2, user=None, reason="")
    StockMovement.objects.update(created_at=days_ago(40))

    assert prune(policy(ledger_days=30), now=NOW)["stock ledger"] == 4
    per_place = dict(
        StockMovement.objects.values("location_id")
        .annotate(s=Sum("delta"))
        .values_list("location_id", "s")
    )
    assert per_place[north.pk] == 5 and sum(per_place.values()) == 11
    assert StockMovement.objects.count() == 2
    # Already one carried-forward row per location: nothing to fold, nothing reported.
    assert prune(policy(ledger_days=30), now=NOW)["stock ledger"] == 0
    assert StockMovement.objects.count() == 2


def test_a_pruner_that_finds_only_carried_forward_rows_leaves_them():
    """What a second pruner sees when the first committed while it waited for the locks:
    it was handed the product, but the rows are already folded."""
    from app.tracking.history import carry_forward_ledger

    product = Product.objects.create(sku="SEEN-1", name="Seen", price=Decimal(1), stock=4)
    adjust_stock(product, 3, user=None, reason="")
    StockMovement.objects.update(created_at=days_ago(40))
    assert carry_forward_ledger([product.pk], days_ago(30)) == 2
    folded = list(StockMovement.objects.values_list("pk", "delta"))
    assert carry_forward_ledger([product.pk], days_ago(30)) == 0
    assert list(StockMovement.objects.values_list("pk", "delta")) == folded == [(folded[0][0], 7)]
