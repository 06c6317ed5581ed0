"""Low-stock alerts: one per episode, delivered after commit, retried until delivered.

The ``StockAlert`` row is the source of truth. A background task is only a trigger: if an
enqueue is lost (process died after commit, broker down), ``enqueue_due_alerts`` (the
``deliver_pending`` command) finds the row again. Delivery claims the row with a lease
before talking SMTP, so two workers never send the same alert; the message carries a
stable Message-ID, so the rare resend after a crash mid-send is recognisable downstream.
"""

from __future__ import annotations

import logging
import re
from array import array
from collections.abc import Sequence
from datetime import datetime

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone

from .. import conf
from ..core import jobs
from ..core.sqlrows import insert_rows, json_list
from ..models import DeliveryStatus, Product, Reservation, StockAlert, StockLevel
from ..signals import alerts_opened, alerts_resolved
from ..tracking.changes import STOCK_CHANGED, THRESHOLD_CROSSED, Change, ChangeSet
from . import delivery

logger = logging.getLogger(__name__)

CHUNK = 2000

__all__ = ["alerts_opened", "alerts_resolved"]  # declared in app.signals, importable here


def check_thresholds(changes: ChangeSet, *, using: str) -> None:
    """The alerts effect: products whose stock crossed their threshold (either way), and
    new products, get their alert opened or resolved (``alerts_opened``/``_resolved``).
    Watching available stock, a stock change of a product with active reservations is
    checked too (its available stock may cross where its stock on hand does not)."""
    crossing = changes.rows(THRESHOLD_CROSSED) if changes.has(THRESHOLD_CROSSED) else []
    if conf.low_stock_on_available() and changes.has(STOCK_CHANGED):
        holding = _holding(using)
        if holding:
            seen = {c.pk for c in crossing}
            crossing = list(crossing) + [
                c for c in changes.rows(STOCK_CHANGED) if c.pk in holding and c.pk not in seen
            ]
    if crossing:
        reconcile_alerts(crossing, using=using)
    if changes.has(STOCK_CHANGED):
        watched = _with_location_thresholds(using)
        if watched:
            pks = {pk for (pk,) in changes.values(("pk",), STOCK_CHANGED) if pk in watched}
            reconcile_location_alerts(sorted(pks), using=using)


def _with_location_thresholds(using: str) -> set[int]:
    """Products with a per-location threshold somewhere, or an open per-location episode
    (few, next to a catalogue)."""
    levels = StockLevel.objects.using(using).filter(low_stock_threshold__isnull=False)
    open_alerts = StockAlert.objects.using(using).filter(
        location__isnull=False, resolved_at__isnull=True
    )
    return set(levels.values_list("product_id", flat=True).distinct()) | set(
        open_alerts.values_list("product_id", flat=True)
    )


def reconcile_location_alerts(pks: Sequence[int], *, using: str = "default") -> list[StockAlert]:
    """The per-location episodes of these products: for each level with its own threshold,
    open an alert (with the location) when its stock (available or on hand, as for the
    product) is below it, resolve the open one when it is not. Callers hold the product
    rows' locks, as for ``reconcile_alerts``."""
    watched_products = _with_location_thresholds(using)
    pks = [pk for pk in pks if pk in watched_products]
    if not pks:
        return []
    now = timezone.now()
    levels = list(
        StockLevel.objects.using(using)
        .filter(product_id__in=pks, low_stock_threshold__isnull=False)
        .select_related("product", "location")
    )
    held: dict[tuple[int, int], int] = {}
    if conf.low_stock_on_available():
        rows = (
            _active_holds(using)
            .filter(product_id__in=pks, location__isnull=False)
            .values_list("product_id", "location_id")
            .annotate(n=Sum("quantity"))
        )
        held = {(p, loc): n for p, loc, n in rows}
    open_now = {
        (a.product_id, a.location_id): a
        for a in StockAlert.objects.using(using).filter(
            product_id__in=pks, location__isnull=False, resolved_at__isnull=True
        )
    }
    watched = {(level.product_id, level.location_id) for level in levels}
    opened, resolved = [], []
    for level in levels:
        key = (level.product_id, level.location_id)
        value = level.quantity - held.get(key, 0)
        if value < level.low_stock_threshold:
            if key not in open_now:
                opened.append(
                    StockAlert(
                        product=level.product,
                        location=level.location,
                        sku=level.product.sku,
                        name=level.product.name,
                        stock=max(value, 0),
                        threshold=level.low_stock_threshold,
                        opened_at=now,
                    )
                )
        elif key in open_now:
            resolved.append(open_now[key])
    # A threshold removed: its open episode ends too.
    resolved += [alert for key, alert in open_now.items() if key not in watched]
    if resolved:
        StockAlert.objects.using(using).filter(pk__in=[a.pk for a in resolved]).update(
            resolved_at=now
        )
        for alert in resolved:
            alert.resolved_at = now
        alerts_resolved.send(sender=StockAlert, alerts=resolved, using=using)
    if opened:
        StockAlert.objects.using(using).bulk_create(opened)
        for alert in opened:
            logger.info(
                "Low stock alert opened for %s at %s: %s < %s",
                alert.sku,
                alert.location.code,
                alert.stock,
                alert.threshold,
            )
        schedule_delivery([a.pk for a in opened], using=using)
        alerts_opened.send(sender=StockAlert, alerts=opened, using=using)
    return opened


def _active_holds(using: str):
    return Reservation.objects.using(using).filter(
        status=Reservation.Status.ACTIVE, expires_at__gt=timezone.now()
    )


def _holding(using: str) -> set[int]:
    """Products with active reservations (few, next to a catalogue)."""
    return set(_active_holds(using).values_list("product_id", flat=True).distinct())


def held_by_product(pks: Sequence[int], *, using: str = "default") -> dict[int, int]:
    """Units held by active reservations, per product of ``pks`` (none when alerts watch
    stock on hand)."""
    if not conf.low_stock_on_available() or not pks:
        return {}
    held: dict[int, int] = {}
    for start in range(0, len(pks), CHUNK):
        rows = (
            _active_holds(using)
            .filter(product_id__in=pks[start : start + CHUNK])
            .values_list("product_id")
            .annotate(n=Sum("quantity"))
        )
        held.update(rows)
    return held


def reconcile_alerts(
    products: Sequence[Product | Change],
    *,
    using: str = "default",
    held: dict[int, int] | None = None,
) -> list[StockAlert]:
    """Open an alert for each low product without one; resolve open alerts of restocked ones.

    ``products``: products, or changes (their values after the write). Callers have
    written (and so locked) the product rows first, which serialises this per product;
    the partial unique constraint is the last line of defence. ``held``: the units held
    per product when the caller knows them (a reservation's counter), else summed here.
    """
    now = timezone.now()
    by_pk = {p.pk: p for p in products}  # the last change of a product counts
    if held is None:
        held = held_by_product(list(by_pk), using=using)
    elif not conf.low_stock_on_available():
        held = {}
    level = {pk: p.stock - held.get(pk, 0) for pk, p in by_pk.items()}
    low = {pk: p for pk, p in by_pk.items() if level[pk] < p.low_stock_threshold}
    restocked = [pk for pk in by_pk if pk not in low]
    alerts = StockAlert.objects.using(using)
    for start in range(0, len(restocked), CHUNK):
        chunk = alerts.filter(
            product_id__in=restocked[start : start + CHUNK],
            resolved_at__isnull=True,
            location__isnull=True,
        )
        resolved = list(chunk) if alerts_resolved.has_listeners(StockAlert) else []
        chunk.update(resolved_at=now)
        instances = _instances([by_pk[alert.product_id] for alert in resolved], using=using)
        for alert in resolved:
            alert.resolved_at, alert.product = now, instances[alert.product_id]
        if resolved:
            alerts_resolved.send(sender=StockAlert, alerts=resolved, using=using)
    if not low:
        return []
    ids = list(low)
    already_open: set[int] = set()
    for start in range(0, len(ids), CHUNK):
        already_open.update(
            alerts.filter(
                product_id__in=ids[start : start + CHUNK],
                resolved_at__isnull=True,
                location__isnull=True,
            ).values_list("product_id", flat=True)
        )
    opened = [
        StockAlert(
            product_id=pk,
            sku=p.sku,
            name=p.name,
            stock=max(level[pk], 0),
            threshold=p.low_stock_threshold,
            opened_at=now,
        )
        for pk, p in low.items()
        if pk not in already_open
    ]
    for alert in opened:
        instance = _instance_of(low[alert.product_id])
        if instance is not None:
            alert.product = instance
    _insert(opened, using=using)
    for alert in opened:
        logger.info(
            "Low stock alert opened for %s: %s < %s", alert.sku, alert.stock, alert.threshold
        )
    schedule_delivery([a.pk for a in opened], using=using)
    if opened:
        alerts_opened.send(sender=StockAlert, alerts=opened, using=using)
    return opened


ALERT_COLUMNS = (
    "product_id", "sku", "name", "stock", "threshold", "opened_at", "delivery_status",
    "attempts", "last_error",
)  # fmt: skip


def _instance_of(product: Product | Change) -> Product | None:
    return product if isinstance(product, Product) else product.instance


def _instances(products: Sequence[Product | Change], *, using: str) -> dict[int, Product]:
    """The ``Product`` of each of ``products``, read for changes that carry none (the
    SQL route's), so receivers of ``alerts_resolved`` get instances as after ``save()``
    (with the change's values: folded map steps, ``app.pipelines.folded``, write the row
    once for several steps)."""
    found = {p.pk: i for p in products if (i := _instance_of(p)) is not None}
    missing = [p.pk for p in products if p.pk not in found]
    for start in range(0, len(missing), CHUNK):
        found.update(Product.objects.using(using).in_bulk(missing[start : start + CHUNK]))
    for p in products:  # as after the change: a later write may be in the row already
        instance = found.get(p.pk) if isinstance(p, Change) and p.instance is None else None
        if instance is not None:
            instance.__dict__.update(p.after)
    return found


def _insert(opened: list[StockAlert], *, using: str) -> None:
    """``bulk_create`` without per-field compiling (a pipeline can open thousands)."""
    rows = [tuple(getattr(alert, name) for name in ALERT_COLUMNS) for alert in opened]
    ids = dict(
        insert_rows(StockAlert, ALERT_COLUMNS, rows, using=using, returning=("product", "id"))
    )
    for alert in opened:  # one new alert per product: its id is found by product
        alert.pk = ids[alert.product_id]
        alert._state.adding, alert._state.db = False, using


def close_alerts_of_deleted(products: Sequence[Product], *, using: str = "default") -> None:
    """Resolve the open alerts (of every location) of products about to be deleted."""
    ids = json_list([p.pk for p in products], using=using, sql_type="bigint")
    StockAlert.objects.using(using).filter(product_id__in=ids, resolved_at__isnull=True).update(
        resolved_at=timezone.now()
    )


def schedule_delivery(alert_ids: Sequence[int], *, using: str = "default") -> None:
    """Enqueue delivery once the surrounding transaction commits (never for rolled-back work)."""
    for start in range(0, len(alert_ids), CHUNK):
        # 8 bytes an id until the commit (a list of ints takes 36): a feed of millions of
        # rows can open a million alerts in one run.
        chunk = array("q", alert_ids[start : start + CHUNK])
        transaction.on_commit(lambda chunk=chunk: enqueue_delivery(chunk), using=using, robust=True)


def enqueue_delivery(alert_ids: Sequence[int], run_after: datetime | None = None) -> None:
    deliver = jobs.task("deliver_stock_alerts")
    task = deliver.using(run_after=run_after) if run_after else deliver
    task.enqueue([int(pk) for pk in alert_ids])


def enqueue_due_alerts(now: datetime | None = None) -> int:
    """Re-enqueue every pending alert that is due: the safety net for lost enqueues."""
    now = now or timezone.now()
    due = list(ALERTS.pending_rows(now).order_by("pk").values_list("pk", flat=True))
    for start in range(0, len(due), CHUNK):
        enqueue_delivery(due[start : start + CHUNK])
    return len(due)


ALERTS = delivery.Track(
    model=StockAlert,
    label="Low stock alert",
    status="delivery_status",
    done_at="sent_at",
    pending=DeliveryStatus.PENDING.value,
    done=DeliveryStatus.SENT.value,
    given_up=DeliveryStatus.FAILED.value,
    max_attempts_setting="STOCKPIPE_DELIVERY_MAX_ATTEMPTS",
)

# Line breaks (the e-mail library refuses them in a header) and other control characters.
_UNSAFE_IN_HEADER = re.compile(r"\s*[\x00-\x1f\x7f-\x9f\u2028\u2029]+\s*")


def header_text(value: str) -> str:
    """``value`` on one line: each run of line breaks/control characters becomes a space.

    New product names cannot contain them; rows written before that rule still can.
    """
    return _UNSAFE_IN_HEADER.sub(" ", value).strip()


def alert_message(alert: StockAlert) -> EmailMessage:
    """The seed's wording; a per-location episode names its location in both lines."""
    domain = settings.DEFAULT_FROM_EMAIL.rpartition("@")[2] or "stockpipe"
    where = ""
    if alert.location_id is not None:
        where = f" at {header_text(alert.location.name)} ({alert.location.code})"
    return EmailMessage(
        subject=f"Low Stock Alert: {header_text(alert.name)}{where}",
        body=f"Only {alert.stock} units remaining{where}",
        to=[conf.manager_email()],
        headers={"Message-ID": f"<stock-alert-{alert.pk}@{domain}>"},
    )


def deliver_alert(alert_id: int) -> str:
    """Send one alert if it is pending and due; return what happened.

    Any error after the claim (loading the row, building the message, SMTP) is recorded as
    a failed attempt of this alert, so one bad alert never stops the others of its batch.
    """
    attempt = delivery.claim(ALERTS, alert_id)
    if attempt is None:
        return "skipped"
    try:
        alert = StockAlert.objects.select_related("location").get(pk=alert_id)
        alert_message(alert).send()
    except Exception as exc:  # any error: recorded on this alert, never stops the batch
        outcome, retry_at = delivery.record_failure(ALERTS, alert_id, attempt, exc)
        if retry_at is not None:
            _enqueue_retry(alert_id, retry_at)
        return outcome
    outcome = delivery.record_success(ALERTS, alert_id)
    logger.info("Low stock alert %s for %s sent", alert.pk, alert.sku)
    return outcome


def _enqueue_retry(alert_id: int, retry_at: datetime) -> None:
    try:
        enqueue_delivery([alert_id], run_after=retry_at)
    except Exception:  # the sweeper will find the pending row
        logger.exception("Could not enqueue retry of alert %s", alert_id)


def retry_failed(alert_ids: Sequence[int]) -> int:
    """Put given failed alerts back in the queue (admin action)."""
    count = delivery.requeue(
        ALERTS, StockAlert.objects.filter(pk__in=alert_ids, delivery_status=DeliveryStatus.FAILED)
    )
    transaction.on_commit(lambda: enqueue_delivery(list(alert_ids)), robust=True)
    return count
