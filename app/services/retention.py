"""Retention: what ``manage.py prune`` may remove, and what it must keep.

Operational rows go after a number of days (delivered webhook outbox rows and their attempt
logs, finished task results, the spec and result of finished pipeline runs, whose run record
stays). Evidence (price history, stock ledger, deletion audit) is kept unless a setting asks
otherwise, and price history never inside the Omnibus window: the 30 days before now and
before the start of any price reduction in effect, which ``omnibus.current_reduction`` needs.

Nothing that a running pipeline uses is touched: only finished runs and task results,
delivered (never pending or dead) outbox rows, and history older than 30 days.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from functools import partial

from django.db import connection, transaction
from django.db.models import Count, F
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from .. import conf
from ..models import DeletionAudit, PipelineRun, PipelineRunSpec, PriceHistory, StockMovement
from ..models.webhooks import WebhookAttempt, WebhookDelivery
from ..tracking.history import carry_forward_ledger, prune_price_history
from . import partitioning
from .omnibus import WINDOW, current_reduction

BATCH = 5000
FINISHED_RUNS = (
    PipelineRun.Status.SUCCEEDED,
    PipelineRun.Status.FAILED,
    PipelineRun.Status.PREVIEWED,
)


@dataclass(frozen=True)
class RetentionPolicy:
    """Days to keep each kind of row; ``None`` keeps it for ever."""

    outbox_days: int | None
    task_result_days: int | None
    run_payload_days: int | None
    price_history_days: int | None
    ledger_days: int | None
    audit_days: int | None

    @classmethod
    def from_settings(cls, **overrides: int | None) -> RetentionPolicy:
        values = {f.name: conf.retention_days(f.name) for f in fields(cls)}
        values.update(overrides)
        for name, days in values.items():
            if days is not None and days < 0:
                raise ValueError(f"{name}: days must be 0 or more, not {days}")
        return cls(**values)


def prune(
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    partitions: list[str] | None = None,
) -> dict[str, int]:
    """Remove (or, with ``dry_run``, count) what the policy lets go; returns rows per kind.
    ``partitions``, if given, receives a line for each whole partition dropped (or, with
    ``dry_run``, that would be); its rows are counted in the report like the others."""
    now = now or timezone.now()

    def cutoff(days: int | None) -> datetime | None:
        return None if days is None else now - timedelta(days=days)

    report = {
        "webhook deliveries": 0,
        "task results": 0,
        "pipeline run payloads": 0,
        "price history": 0,
        "stock ledger": 0,
        "deletion audit": 0,
    }
    if (before := cutoff(policy.outbox_days)) is not None:
        dropped = _drop_outbox_months(before, dry_run, partitions)
        report["webhook deliveries"] = dropped + _prune_outbox(before, dry_run)
    if (before := cutoff(policy.task_result_days)) is not None:
        report["task results"] = _in_batches(
            DBTaskResult.objects.finished().filter(finished_at__lt=before), dry_run
        )
    if (before := cutoff(policy.run_payload_days)) is not None:
        report["pipeline run payloads"] = _prune_run_payloads(before, now, dry_run)
    if (before := cutoff(policy.price_history_days)) is not None:
        before = min(before, now - WINDOW)
        report["price history"] = prune_price_history(
            before, keep_from=_omnibus_windows(now, before), dry_run=dry_run
        )
    if (before := cutoff(policy.ledger_days)) is not None:
        report["stock ledger"] = _prune_ledger(before, dry_run)
    if (before := cutoff(policy.audit_days)) is not None:
        report["deletion audit"] = _in_batches(
            DeletionAudit.objects.filter(deleted_at__lt=before), dry_run
        )
    return report


def _in_batches(rows, dry_run: bool) -> int:
    """Delete ``rows`` a batch of primary keys at a time (short transactions, no long lock)."""
    if dry_run:
        return rows.count()
    removed = 0
    while ids := list(rows.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            rows.model._base_manager.filter(pk__in=ids).delete()
        removed += len(ids)
    return removed


def _prune_outbox(before: datetime, dry_run: bool) -> int:
    """Delivered rows only: pending ones are still owed, dead ones are the evidence (and can
    be retried from the admin)."""
    delivered = WebhookDelivery.objects.filter(
        status=WebhookDelivery.Status.DELIVERED, delivered_at__lt=before
    )
    if dry_run:
        return delivered.count()
    removed = 0
    while ids := list(delivered.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        with transaction.atomic():
            WebhookAttempt.objects.filter(delivery_id__in=ids).delete()
            WebhookDelivery.objects.filter(pk__in=ids).delete()
        removed += len(ids)
    return removed


def _drop_outbox_months(before: datetime, dry_run: bool, say: list[str] | None) -> int:
    """On a partitioned outbox, drop each partition wholly older than ``before`` whose rows
    are all delivered before ``before`` (what ``_prune_outbox`` would delete one by one):
    their attempts are deleted in batches, then the partition is detached and dropped in
    one short transaction that checks again, under the lock, that no row fails to qualify
    and no attempt points at one (``NOT EXISTS`` tests; the rows are counted before the
    lock, for the report only). Returns its rows (with ``dry_run``: the rows
    of the partitions that qualify now, which the row-by-row count includes too, so 0).
    A partition whose check under the lock runs past ``DROP_CHECK_TIMEOUT`` (a dry run does
    not take the lock, so cannot tell) is kept, said so, and the next one tried; its rows
    then go row by row, so the total is what the dry run counted.

    Only the outbox: a month of price history or ledger never qualifies as a whole by these
    rules (Omnibus windows are per product, and ledger rows fold into a carried-forward row
    per product and location that must stay), so they go row by row."""
    table = WebhookDelivery._meta.db_table
    if not partitioning.is_partitioned(table):
        return 0
    removed = 0
    for name, _start, end in partitioning.partitions(table):
        if end is None or end > before:  # the default partition, a recent or future month
            continue
        rows = _qualifying_rows(name, before)
        if rows is None:
            continue
        if dry_run:
            if say is not None:
                say.append(f"{table}: would drop partition {name} ({rows} delivered rows)")
            continue
        _delete_attempts_of(name, before)
        try:
            dropped = partitioning.drop_partition(
                table, name, partial(_still_qualifies, name, before, rows)
            )
        except partitioning.DropCheckTimedOut:
            # Only this drop rolled back: its rows go row by row like any others.
            if say is not None:
                say.append(
                    f"{table}: kept partition {name}: its check under the table lock ran past "
                    f"{partitioning.DROP_CHECK_TIMEOUT}; its rows are pruned row by row"
                )
            continue
        if dropped is not None:
            removed += dropped
            if say is not None:
                say.append(f"{table}: dropped partition {name} ({dropped} delivered rows)")
    return removed


def _qualifying_rows(partition: str, before: datetime) -> int | None:
    """Rows of the outbox ``partition`` if every one is delivered before ``before``;
    otherwise None. A full scan: run without the partition drop's lock."""
    sql = (
        f"SELECT count(*), coalesce(bool_and(status = %s AND delivered_at < %s), true) "
        f"FROM {_quoted(partition)}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [WebhookDelivery.Status.DELIVERED, before])
        rows, all_delivered = cursor.fetchone()
    return rows if all_delivered else None


def _still_qualifies(partition: str, before: datetime, rows: int) -> int | None:
    """Under the drop's lock: ``rows`` (counted before it) if no row of ``partition`` fails
    to qualify and no attempt points at one, else None; stops at the first offender."""
    attempts = WebhookAttempt._meta.db_table
    sql = (
        f"SELECT NOT EXISTS (SELECT 1 FROM {_quoted(partition)} d WHERE d.status <> %s "
        "OR d.delivered_at IS NULL OR d.delivered_at >= %s) "
        f"AND NOT EXISTS (SELECT 1 FROM {_quoted(attempts)} a "
        f"JOIN {_quoted(partition)} d ON d.id = a.delivery_id)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [WebhookDelivery.Status.DELIVERED, before])
        return rows if cursor.fetchone()[0] else None


def _delete_attempts_of(partition: str, before: datetime) -> None:
    """The attempt logs of the partition's delivered deliveries, a batch at a time (each
    would go with its delivery row by row anyway)."""
    attempts = WebhookAttempt._meta.db_table
    while True:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                f"DELETE FROM {_quoted(attempts)} WHERE id IN (SELECT a.id FROM "
                f"{_quoted(attempts)} a JOIN {_quoted(partition)} d ON d.id = a.delivery_id "
                "WHERE d.status = %s AND d.delivered_at < %s LIMIT %s)",
                [WebhookDelivery.Status.DELIVERED, before, BATCH],
            )
            if cursor.rowcount < BATCH:
                return


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _prune_run_payloads(before: datetime, now: datetime, dry_run: bool) -> int:
    """Empty the spec and result of finished runs; status, counts, error and times stay."""
    runs = PipelineRun.objects.filter(
        status__in=FINISHED_RUNS, finished_at__lt=before, payload_pruned_at__isnull=True
    )
    if dry_run:
        return runs.count()
    pruned = 0
    while ids := list(runs.order_by("pk").values_list("pk", flat=True)[:BATCH]):
        # Still finished and not yet pruned when the UPDATEs run: checked in their WHERE.
        # The specs (a table of their own) first, then the runs, in one transaction.
        batch = runs.filter(pk__in=ids)
        with transaction.atomic():
            PipelineRunSpec.objects.filter(run__in=batch).update(spec={})
            pruned += batch.update(result=None, payload_pruned_at=now)
    return pruned


def _omnibus_windows(now: datetime, before: datetime) -> dict[int, datetime]:
    """Per product with a price reduction in effect, the start of the history its prior
    price is computed from, where that is earlier than ``before``. Only a product changed
    within the last 30 days can have a reduction in effect."""
    recent = (
        PriceHistory.objects.filter(changed_at__gt=now - WINDOW, product_id__isnull=False)
        .values_list("product_id", flat=True)
        .order_by("product_id")
        .distinct()
    )
    windows, after = {}, 0
    while chunk := list(recent.filter(product_id__gt=after)[:BATCH]):
        after = chunk[-1]
        for product_id in chunk:
            reduction = current_reduction(product_id, now)
            if reduction is not None and reduction.started_at - WINDOW < before:
                windows[product_id] = reduction.started_at - WINDOW
    return windows


def _prune_ledger(before: datetime, dry_run: bool) -> int:
    """Old rows of existing products fold into one carried-forward row per product (stock
    still equals the ledger's sum); rows of deleted products just go."""
    removed = _in_batches(
        StockMovement.objects.filter(product_id__isnull=True, created_at__lt=before), dry_run
    )
    # A product whose old rows are already one carried-forward row per location has nothing
    # to fold.
    products = (
        StockMovement.objects.filter(product_id__isnull=False, created_at__lt=before)
        .values("product_id")
        .annotate(rows=Count("id"), places=Count("location_id", distinct=True))
        .filter(rows__gt=F("places"))
        .values_list("product_id", flat=True)
        .order_by("product_id")
    )
    after = 0
    while chunk := list(products.filter(product_id__gt=after)[:200]):
        after = chunk[-1]
        with transaction.atomic():
            removed += carry_forward_ledger(chunk, before, dry_run=dry_run)
    return removed
