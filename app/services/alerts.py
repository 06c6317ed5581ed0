"""Low-stock alerts: one per episode, delivered after commit, retried until delivered.

The ``StockAlert`` row is the source of truth. A background task is only a trigger: if an
enqueue is lost (process died after commit, broker down), ``enqueue_due_alerts`` (the
``deliver_pending`` command) finds the row again. Delivery claims the row with a lease
before talking SMTP, so two workers never send the same alert; the message carries a
stable Message-ID, so the rare resend after a crash mid-send is recognisable downstream.
"""

from __future__ import annotations

import functools
import logging
import re
from array import array
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import connections, models, transaction
from django.db.models import Sum
from django.utils import timezone

from .. import conf
from ..core import jobs
from ..core.sqlrows import json_list, json_rows, json_rows_sql
from ..models import DeliveryStatus, Product, Reservation, StockAlert, StockLevel
from ..signals import alerts_opened, alerts_resolved, listened
from ..tracking.changes import (
    STOCK_CHANGED,
    THRESHOLD_CHANGED,
    THRESHOLD_CROSSED,
    Change,
    ChangeSet,
    Where,
)
from . import delivery

logger = logging.getLogger(__name__)

CHUNK = 2000

__all__ = ["alerts_opened", "alerts_resolved"]  # declared in app.signals, importable here


def check_thresholds(changes: ChangeSet, *, using: str) -> None:
    """The alerts effect: products whose stock crossed their threshold (either way), and
    new products, get their alert opened or resolved (``alerts_opened``/``_resolved``).
    Watching available stock, a stock or threshold change of a product with active
    reservations is checked too (its available stock may cross where its stock on hand
    does not).

    Set-based: the last checked change of each product is compared with its threshold in
    SQL (``_episodes``), over the change set's rows where they are (the SQL route's stage,
    or Python rows as one JSON parameter)."""
    stocked = changes.has(STOCK_CHANGED)
    holding: set[int] = set()
    if conf.low_stock_on_available() and (stocked or changes.has(THRESHOLD_CHANGED)):
        holding = _holding(using)
    if changes.has(THRESHOLD_CROSSED) or holding:
        where, held, params = THRESHOLD_CROSSED, "", []
        if holding:
            where = _crossed_or_held(holding)
            held, params = _held_sql(using)
        columns = (
            "c.ord AS ord, c.pk AS pk, c.sku AS sku, c.name AS name, "
            f"c.stock{held} AS level, c.threshold AS threshold"
        )
        _episodes(
            changes.select_last(columns, where, params),
            using=using,
            instances=changes.instances(where),
            after=lambda: _last_values(changes, where),
            notes=changes.notes("alerts"),
        )
    if stocked:
        watched = _with_location_thresholds(using)
        if watched:
            pks = {pk for (pk,) in changes.values(("pk",), STOCK_CHANGED) if pk in watched}
            opened, resolved = _reconcile_location_alerts(sorted(pks), watched, using=using)
            notes = changes.notes("alerts")
            notes.extend(("opened", a.sku, a.stock, a.threshold) for a in opened)
            notes.extend(("resolved", a.sku) for a in resolved)


def _crossed_or_held(holding: set[int]) -> Where:
    """``THRESHOLD_CROSSED``, or a stock or threshold change of one of the products
    ``holding`` (available stock may cross where stock on hand does not). The ids are
    integers read from the database, written into the SQL as literals (few, next to a
    catalogue)."""
    ids = sorted(int(pk) for pk in holding)
    crossed, stocked, moved = THRESHOLD_CROSSED.test, STOCK_CHANGED.test, THRESHOLD_CHANGED.test
    held = frozenset(ids)
    return Where(
        f"threshold crossed or held {hash(tuple(ids))}",
        f"({THRESHOLD_CROSSED.sql}) OR (({STOCK_CHANGED.sql} OR {THRESHOLD_CHANGED.sql}) "
        f"AND c.pk IN ({', '.join(map(str, ids))}))",
        lambda c: crossed(c) or (c.pk in held and (stocked(c) or moved(c))),
        frozenset({"stock", "low_stock_threshold"}),
    )


# Units held by the product's active reservations, subtracted from its stock in SQL.
_HELD = (
    " - COALESCE((SELECT SUM(r.quantity) FROM {reservation} r WHERE r.product_id = c.pk "
    "AND r.status = %s AND r.expires_at > %s), 0)"
)


def _held_sql(using: str) -> tuple[str, list]:
    connection = connections[using]
    table = connection.ops.quote_name(Reservation._meta.db_table)
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    return _HELD.format(reservation=table), [Reservation.Status.ACTIVE.value, now]


def _with_location_thresholds(using: str) -> set[int]:
    """Products with a per-location threshold somewhere, or an open per-location episode
    (few, next to a catalogue)."""
    levels = StockLevel.objects.using(using).filter(low_stock_threshold__isnull=False)
    # The conditions of ``one_open_stock_alert_per_location``, unordered: read from that
    # partial index alone, not by a scan of every alert (run for each change set).
    open_alerts = StockAlert.objects.using(using).filter(
        product__isnull=False, location__isnull=False, resolved_at__isnull=True
    )
    return set(levels.values_list("product_id", flat=True).distinct()) | set(
        open_alerts.order_by().values_list("product_id", flat=True)
    )


def reconcile_location_alerts(pks: Sequence[int], *, using: str = "default") -> list[StockAlert]:
    """The per-location episodes of these products: for each level with its own threshold,
    open an alert (with the location) when its stock (available or on hand, as for the
    product) is below it, resolve the open one when it is not. Callers hold the product
    rows' locks, as for ``reconcile_alerts``. Returns the alerts opened."""
    return _reconcile_location_alerts(pks, _with_location_thresholds(using), using=using)[0]


def _reconcile_location_alerts(
    pks: Sequence[int], watched_products: set[int], *, using: str
) -> tuple[list[StockAlert], list[StockAlert]]:
    """``reconcile_location_alerts`` given the products ``_with_location_thresholds``
    found; returns the alerts opened and those resolved."""
    pks = [pk for pk in pks if pk in watched_products]
    if not pks:
        return [], []
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
    return opened, resolved


def _active_holds(using: str):
    return Reservation.objects.using(using).filter(
        status=Reservation.Status.ACTIVE, expires_at__gt=timezone.now()
    )


def _holding(using: str) -> set[int]:
    """Products with active reservations (few, next to a catalogue); a reservation of a
    deleted product (its product set to null) names none."""
    held = set(_active_holds(using).values_list("product_id", flat=True).distinct())
    held.discard(None)
    return held


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
    by_pk = {p.pk: p for p in products}  # the last change of a product counts
    if not by_pk:
        return []
    if held is None:
        held = held_by_product(list(by_pk), using=using)
    elif not conf.low_stock_on_available():
        held = {}
    connection = connections[using]
    fields = [_ORD, Product._meta.pk, _F("sku"), _F("name"), _F("stock"), _F("stock")]
    source = "SELECT * FROM " + json_rows_sql(connection, fields, _EPISODE_COLUMNS, alias="j")
    rows = [
        (i, pk, p.sku, p.name, p.stock - held.get(pk, 0), p.low_stock_threshold)
        for i, (pk, p) in enumerate(by_pk.items())
    ]
    low = sum(1 for row in rows if row[4] < row[5])
    instances = {
        pk: instance for pk, p in by_pk.items() if (instance := _instance_of(p)) is not None
    }
    return _episodes(
        ((source, [json_rows(rows[i : i + CHUNK])]) for i in range(0, len(rows), CHUNK)),
        using=using,
        instances=instances,
        resolving=low < len(rows),
        opening=low > 0,
        returning=True,
    )


_F = Product._meta.get_field
_ORD = models.IntegerField()
# The relation ``_episodes`` reads: each product once, with the stock its threshold is
# compared with (available or on hand).
_EPISODE_COLUMNS = ("ord", "pk", "sku", "name", "level", "threshold")
ALERT_COLUMNS = (
    "product_id", "sku", "name", "stock", "threshold", "opened_at", "delivery_status",
    "attempts", "last_error",
)  # fmt: skip


def _episodes(
    sources: Iterable[tuple[str, list[Any]]],
    *,
    using: str,
    instances: dict[int, Product],
    after: Callable[[], dict[int, dict[str, Any]]] | None = None,
    notes: list[tuple] | None = None,
    resolving: bool = True,
    opening: bool = True,
    returning: bool = False,
) -> list[StockAlert]:
    """The one place product-wide episodes open and end, set-based: each of ``sources``
    is a ``SELECT`` (with its parameters) of ``_EPISODE_COLUMNS``, one row per product.
    Open alerts of products at or above their threshold are resolved (one ``UPDATE``),
    products below it without an open alert get one (one ``INSERT ... SELECT``), then the
    signals go out and delivery is scheduled for after the commit. ``instances``: the
    products' instances where the write had them (passed on with the alerts), the others
    are read for ``alerts_resolved``. ``notes`` gets ``("opened", sku, stock, threshold)``
    and ``("resolved", sku)`` per alert. The signals' alerts are built only when a
    receiver would read them (``app.signals.listened``). Returns the alerts opened (built
    when ``returning``, else only for the signal)."""
    if after is not None:
        after = functools.cache(after)  # read once, however many chunks and alerts ask
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = StockAlert._meta
    table = qn(meta.db_table)
    col = {f.attname: qn(f.column) for f in meta.concrete_fields}
    pg = connection.vendor == "postgresql"
    now = timezone.now()
    stamp = connection.ops.adapt_datetimefield_value(now)
    is_open = f"{col['location_id']} IS NULL AND {col['resolved_at']} IS NULL"
    status, attempts, error = (meta.get_field(n).get_default() for n in ALERT_COLUMNS[-3:])
    defaults = [str(status), attempts, error]
    typed = ("%s::timestamptz", "%s::text", "%s::integer", "%s::text") if pg else ("%s",) * 4
    into = ", ".join(col[meta.get_field(n).attname] for n in ALERT_COLUMNS)
    # ``{x}``: the source, as a FROM item named x.
    resolve = (
        f"UPDATE {table} SET {col['resolved_at']} = %s WHERE {is_open} AND "
        f"{col['product_id']} IN (SELECT x.pk FROM {{x}} WHERE x.level >= x.threshold) "
        f"RETURNING {col['id']}, {col['sku']}"
    )
    open_ = (
        f"INSERT INTO {table} ({into}) SELECT x.pk, x.sku, x.name, CASE WHEN "
        f"x.level > 0 THEN x.level ELSE 0 END, x.threshold, {', '.join(typed)} "
        f"FROM {{x}} WHERE x.level < x.threshold AND NOT EXISTS (SELECT 1 "
        f"FROM {table} a WHERE a.{col['product_id']} = x.pk AND a.{col['location_id']} IS NULL "
        f"AND a.{col['resolved_at']} IS NULL) ORDER BY x.ord RETURNING {col['id']}, "
        f"{col['product_id']}, {col['sku']}, {col['name']}, {col['stock']}, {col['threshold']}"
    )
    resolved_rows: list[tuple[int, str]] = []
    fresh: list[tuple] = []
    with connection.cursor() as cursor:
        for sql, params in sources:
            if pg and resolving and opening:
                # One statement, the source read once: both parts see the alerts as they
                # were before it, and touch different products (at or above / below).
                cursor.execute(
                    f"WITH x AS MATERIALIZED ({sql}), r AS ({resolve.format(x='x')}), "
                    f"o AS ({open_.format(x='x')}) SELECT 0, o.* FROM o "
                    f"UNION ALL SELECT 1, r.{col['id']}, NULL, r.{col['sku']}, NULL, NULL, "
                    "NULL FROM r",
                    [*params, stamp, stamp, *defaults],
                )
                for which, *row in cursor.fetchall():
                    if which:
                        resolved_rows.append((row[0], row[2]))
                    else:
                        fresh.append(tuple(row))
                continue
            if resolving:
                cursor.execute(resolve.format(x=f"({sql}) x"), [stamp, *params])
                resolved_rows.extend(cursor.fetchall())
            if opening:
                cursor.execute(open_.format(x=f"({sql}) x"), [stamp, *defaults, *params])
                fresh.extend(cursor.fetchall())
    resolved: list[StockAlert] = []
    resolved_ids = sorted(pk for pk, _ in resolved_rows)
    if resolved_ids and listened(alerts_resolved, StockAlert, using=using):
        for start in range(0, len(resolved_ids), CHUNK):
            chunk = list(
                StockAlert.objects.using(using).filter(pk__in=resolved_ids[start : start + CHUNK])
            )
            products = _instances(
                [alert.product_id for alert in chunk], instances, using=using, after=after
            )
            for alert in chunk:
                alert.product = products[alert.product_id]
            resolved.extend(chunk)
    fresh.sort()  # in the order they were inserted (RETURNING promises none)
    for _, _, sku, _, stock, threshold in fresh:
        logger.info("Low stock alert opened for %s: %s < %s", sku, stock, threshold)
    if notes is not None:
        notes.extend(("opened", sku, stock, threshold) for _, _, sku, _, stock, threshold in fresh)
        notes.extend(("resolved", sku) for _, sku in sorted(resolved_rows))
    if resolved:
        alerts_resolved.send(sender=StockAlert, alerts=resolved, using=using)
    schedule_delivery([row[0] for row in fresh], using=using)
    if not fresh or not (returning or listened(alerts_opened, StockAlert, using=using)):
        return []  # nobody would read the instances (no webhook subscriber, say)
    # The products the write had no instance of (the SQL route's), read and given the
    # change's values as for ``alerts_resolved``: receivers see the product's stock on hand
    # on every route (the alert's stock is the available stock when units are held).
    missing = list(dict.fromkeys(row[1] for row in fresh if row[1] not in instances))
    products = {**instances, **_instances(missing, instances, using=using, after=after)}
    opened = []
    for pk, product_id, sku, name, stock, threshold in fresh:
        alert = StockAlert(
            pk=pk,
            product_id=product_id,
            sku=sku,
            name=name,
            stock=stock,
            threshold=threshold,
            opened_at=now,
            delivery_status=status,
            attempts=attempts,
            last_error=error,
        )
        alert._state.adding, alert._state.db = False, using
        instance = products.get(product_id)
        if instance is not None:
            alert.product = instance
        opened.append(alert)
    alerts_opened.send(sender=StockAlert, alerts=opened, using=using)
    return opened


# Change-set columns -> the Product fields they hold.
_AFTER = (("sku", "sku"), ("name", "name"), ("price", "price"), ("stock", "stock"),
          ("threshold", "low_stock_threshold"))  # fmt: skip


def _last_values(changes: ChangeSet, where: Where) -> dict[int, dict[str, Any]]:
    """Each product's values after its last change in ``changes``, by primary key."""
    fields = [field for _, field in _AFTER]
    return {
        pk: dict(zip(fields, values, strict=True))
        for pk, *values in changes.values(("pk", *(column for column, _ in _AFTER)), where)
    }


def _instance_of(product: Product | Change) -> Product | None:
    return product if isinstance(product, Product) else product.instance


def _instances(
    pks: Sequence[int],
    known: dict[int, Product],
    *,
    using: str,
    after: Callable[[], dict[int, dict[str, Any]]] | None = None,
) -> dict[int, Product]:
    """The ``Product`` of each of ``pks``: ``known`` ones as given, the others (the SQL
    route's changes carry none) read, so receivers of ``alerts_resolved`` get instances as
    after ``save()``; ``after`` gives the read ones the change's values (folded map steps,
    ``app.pipelines.folded``, write the row once for several steps)."""
    found = {pk: known[pk] for pk in pks if pk in known}
    missing = [pk for pk in pks if pk not in found]
    for start in range(0, len(missing), CHUNK):
        found.update(Product.objects.using(using).in_bulk(missing[start : start + CHUNK]))
    if missing and after is not None:
        values = after()
        for pk in missing:
            if pk in found and pk in values:
                found[pk].__dict__.update(values[pk])
    return found


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
