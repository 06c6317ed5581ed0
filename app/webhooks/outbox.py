"""Writing webhook events to the outbox, in the transaction of the change.

Product events come from the change pipeline's webhook effect (``record_product_changes``,
registered in ``AppConfig.ready()``), which writes the rows of a whole change set at once;
alert and pipeline events from receivers of ``app.signals`` (``record_alerts``,
``record_pipeline_finished``), through ``add_row`` (buffered and written set-based inside
a change batch, saved at once otherwise). Each event's data is built once, with one
``WebhookDelivery`` row per active subscription to its type. With no subscription to an
event type nothing is built or written: the only cost is a dict lookup in a subscription
set cached per process for a second or two.

After commit, one task per chunk of (subscription, stream) pairs is enqueued; if that
enqueue is lost, the ``deliver_pending`` sweeper finds the rows again.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.db import transaction
from django.db.models.base import ModelState
from django.utils import timezone

from .. import conf
from ..core import oncommit
from ..core.context import current_change_context
from ..models import (
    PipelineRun,
    Product,
    StockAlert,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from ..models.webhooks import insert_deliveries
from ..services import cache_guard
from ..tracking.batch import add_row, collecting_changes
from ..tracking.changes import CREATED as CREATED_KIND
from ..tracking.changes import UPDATED as UPDATED_KIND
from ..tracking.changes import Change, ChangeSet
from .services import enqueue_streams

logger = logging.getLogger(__name__)
PRODUCT_FIELDS = ("name", "price", "stock", "low_stock_threshold")
_CENT = Decimal("0.01")
PENDING = WebhookDelivery.Status.PENDING.value
CREATED = WebhookEvent.PRODUCT_CREATED.value
UPDATED = WebhookEvent.PRODUCT_UPDATED.value
PRICE_CHANGED = WebhookEvent.PRICE_CHANGED.value
DELETED = WebhookEvent.PRODUCT_DELETED.value

# --- which subscriptions want an event ----------------------------------------------------

_lock = threading.Lock()
# per database alias: (valid until, shared version when read, {event type: subscription ids})
_subscribers: dict[str, tuple[float, str | None, dict[str, tuple[int, ...]]]] = {}
_VERSION_KEY = "stockpipe:webhooks:subscriptions:{using}"


def _cache_seconds() -> float:
    return conf.webhook_subscription_cache()


def subscribers(event_type: str, *, using: str = "default") -> tuple[int, ...]:
    """Ids of the active subscriptions to ``event_type``, remembered per process.

    Bulk writes ask this once per change set. With a shared cache (Redis), a version key
    bumped after every committed subscription change tells other processes to re-read at
    once (read from the near cache, so without a round trip); ``STOCKPIPE_WEBHOOK_
    SUBSCRIPTION_CACHE`` bounds how long a set is kept when that version is unknown.
    """
    return _by_type(using).get(event_type, ())


def wants_product_updates(using: str = "default") -> bool:
    """Whether any active subscription wants ``product.updated`` or ``price.changed``."""
    by_type = _by_type(using)
    return bool(by_type.get(UPDATED) or by_type.get(PRICE_CHANGED))


def _by_type(using: str) -> dict[str, tuple[int, ...]]:
    version = _shared_version(using)  # read before the rows: a later bump is noticed
    cached = _subscribers.get(using)
    if (
        cached is not None
        and time.monotonic() <= cached[0]
        and (version is None or version == cached[1])
    ):
        return cached[2]
    by_type: dict[str, list[int]] = {}
    rows = WebhookSubscription.objects.using(using).filter(is_active=True)
    for pk, events in rows.values_list("pk", "events"):
        for name in events or ():
            by_type.setdefault(str(name), []).append(pk)
    cached = (
        time.monotonic() + _cache_seconds(),
        version,
        {name: tuple(ids) for name, ids in by_type.items()},
    )
    with _lock:
        _subscribers[using] = cached
    return cached[2]


def _shared_version(using: str) -> str | None:
    """The subscriptions' version in the shared cache; ``None`` without one (a per-process
    cache, an unreachable Redis, an evicted key): then only the time bound applies."""
    if not cache_guard.enabled():
        return None
    try:
        key = _VERSION_KEY.format(using=using)
        version = cache.get(key)
        if version is None:
            # No change recorded yet (or evicted): start a version, so that later reads
            # come from the near cache (a key that does not exist costs a round trip each
            # time). ``add``: a bump made meanwhile wins; either way a fresh value, unequal
            # to any set this process remembers.
            cache.add(key, uuid.uuid4().hex, None)
            version = cache.get(key)
        return version
    except Exception:  # the cache is an optimisation here; the time bound still holds
        logger.warning("subscription version unreadable", exc_info=True)
        return None


def forget_subscriptions() -> None:
    """Drop the cached subscription sets."""
    with _lock:
        _subscribers.clear()


def subscriptions_changed(*, using: str = "default") -> None:
    """A subscription was saved or deleted: forget the cache now and again after commit
    (another thread may have re-read the old set in between), and after commit tell the
    other processes through the shared version."""
    forget_subscriptions()
    transaction.on_commit(forget_subscriptions, using=using, robust=True)
    transaction.on_commit(lambda: _bump_version(using), using=using, robust=True)


def _bump_version(using: str) -> None:
    if cache_guard.enabled():
        cache.set(_VERSION_KEY.format(using=using), uuid.uuid4().hex, None)


# --- writing rows -----------------------------------------------------------------------


def record_event(
    event_type: str,
    stream: str,
    data: dict[str, Any],
    *,
    subscription_ids: Iterable[int],
    using: str = "default",
    at: datetime | None = None,
) -> uuid.UUID:
    """Add one outbox row per subscription for this event; all share one event id.

    ``at`` is when the change happened (default: now); a bulk write passes its one
    timestamp, so the rows of a batch share it.
    """
    event_id = uuid.uuid4()
    at = at or timezone.now()
    for subscription_id in subscription_ids:
        add_row(_delivery(subscription_id, event_id, event_type, stream, data, at), using=using)
        _schedule(using, subscription_id, stream)
    return event_id


def _delivery(subscription_id, event_id, event_type, stream, data, at) -> WebhookDelivery:
    """A new outbox row. Built without ``Model.__init__`` (so without pre_init/post_init,
    which this internal row needs not), as bulk pipelines build one per event."""
    row = WebhookDelivery.__new__(WebhookDelivery)
    row.__dict__.update(
        id=None,
        subscription_id=subscription_id,
        event_id=event_id,
        event_type=event_type,
        stream=stream,
        data=data,
        created_at=at,
        status=PENDING,
        attempts=0,
        next_attempt_at=None,
        last_status_code=None,
        last_error="",
        delivered_at=None,
        _state=ModelState(),
    )
    return row


def _money(value: Any) -> str:
    return str(Decimal(value).quantize(_CENT))


def _jsonable(name: str, value: Any) -> Any:
    return _money(value) if name == "price" and value is not None else value


def product_data(product: Product | Change) -> dict[str, Any]:
    return _product_values(
        product.pk,
        product.sku,
        product.name,
        product.price,
        product.stock,
        product.low_stock_threshold,
    )


def _product_values(pk, sku, name, price, stock, threshold) -> dict[str, Any]:
    """A product in an event, from its values (``product_data`` for rows read with SQL)."""
    return {
        "id": pk,
        "sku": sku,
        "name": name,
        "price": _jsonable("price", price),
        "stock": stock,
        "low_stock_threshold": threshold,
    }


def _who() -> dict[str, Any]:
    ctx = current_change_context()
    return {"source": ctx.source, "user_id": ctx.user_id}


def record_product_changes(changes: ChangeSet, *, using: str) -> None:
    """The webhook effect: ``product.created``, ``product.updated`` (+ ``price.changed``)
    with old values, ``product.deleted``, for each change of ``changes``, in order, written
    set-based. Nothing is read or built when nobody subscribed to product events."""
    by_type = _by_type(using)
    if not by_type:  # the common case in bulk work: nobody subscribed to anything
        return
    created, deleted = by_type.get(CREATED), by_type.get(DELETED)
    if not (created or deleted or by_type.get(UPDATED) or by_type.get(PRICE_CHANGED)):
        return
    rows: list[WebhookDelivery] = []
    who = _who()
    for change in changes.rows():
        kind = change.kind
        at = change.at
        if kind == UPDATED_KIND:
            changed = {}
            for name in PRODUCT_FIELDS:
                if name in change.before:
                    old = _jsonable(name, change.before[name])
                    new = _jsonable(name, change.get(name))
                    if old != new:
                        changed[name] = {"old": old, "new": new}
            if changed:
                _product_changed(rows, change, changed, at=at, by_type=by_type, who=who)
            continue
        subs = created if kind == CREATED_KIND else deleted
        if subs and change.pk is not None:
            event = CREATED if kind == CREATED_KIND else DELETED
            data = {"product": product_data(change), **who}
            _add(rows, event, f"product:{change.pk}", data, subs, at if event == CREATED else None)
    _write(rows, using=using)


def _product_changed(
    rows: list[WebhookDelivery],
    change: Change,
    changed: dict[str, dict[str, Any]],
    *,
    at: datetime | None,
    by_type: dict[str, tuple[int, ...]],
    who: dict[str, Any],
) -> None:
    """``product.updated`` (and ``price.changed``) of one product."""
    updated, priced = by_type.get(UPDATED), by_type.get(PRICE_CHANGED)
    product = product_data(change)
    stream = f"product:{product['id']}"
    if updated:
        _add(rows, UPDATED, stream, {"product": product, "changes": changed, **who}, updated, at)
    if priced and "price" in changed:
        data = {
            "product": {"id": product["id"], "sku": product["sku"], "name": product["name"]},
            "old": changed["price"]["old"],
            "new": changed["price"]["new"],
            **who,
        }
        _add(rows, PRICE_CHANGED, stream, data, priced, at)


def _add(rows, event_type, stream, data, subscription_ids, at) -> None:
    """One outbox row per subscription for this event, all with one event id."""
    event_id = uuid.uuid4()
    at = at or timezone.now()
    for subscription_id in subscription_ids:
        rows.append(_delivery(subscription_id, event_id, event_type, stream, data, at))


def _write(rows: list[WebhookDelivery], *, using: str) -> None:
    if rows:
        insert_deliveries(rows, using=using)
        for row in rows:
            _schedule(using, row.subscription_id, row.stream)


def _alert_data(alert: StockAlert) -> dict[str, Any]:
    product = alert._state.fields_cache.get("product")
    return {
        "alert": {
            "id": alert.pk,
            "opened_at": alert.opened_at.isoformat() if alert.opened_at else None,
            "resolved_at": alert.resolved_at.isoformat() if alert.resolved_at else None,
            "stock_when_opened": alert.stock,
            "threshold": alert.threshold,
            "location": alert.location.code if alert.location_id else None,
        },
        "product": {
            "id": alert.product_id,
            "sku": alert.sku,
            "name": alert.name,
            "stock": product.stock if product is not None else alert.stock,
            "low_stock_threshold": (
                product.low_stock_threshold if product is not None else alert.threshold
            ),
        },
        **_who(),
    }


def record_alerts(event_type: str, alerts: Sequence[StockAlert], *, using: str) -> None:
    """``stock.low`` / ``stock.restored`` for alerts opened/resolved, written set-based."""
    subs = subscribers(event_type, using=using)
    if not subs or not alerts:
        return
    with collecting_changes(using):
        for alert in alerts:
            stream = f"product:{alert.product_id}" if alert.product_id else f"alert:{alert.pk}"
            record_event(event_type, stream, _alert_data(alert), subscription_ids=subs, using=using)


def record_transfers(transfers: Sequence[Any], *, using: str) -> None:
    """``stock.transferred`` per transfer, on its product's stream (ordered with the
    product's other events); products are read only when somebody subscribed."""
    subs = subscribers(WebhookEvent.STOCK_TRANSFERRED, using=using)
    if not subs or not transfers:
        return
    with collecting_changes(using):
        for start in range(0, len(transfers), 2000):
            chunk = transfers[start : start + 2000]
            products = Product.objects.using(using).in_bulk([t.product_id for t in chunk])
            for transfer in chunk:
                data = {
                    "product": product_data(products[transfer.product_id]),
                    "from_location": transfer.source.code,
                    "to_location": transfer.target.code,
                    "quantity": transfer.quantity,
                    "movement_ids": [movement.pk for movement in transfer.movements],
                    **_who(),
                }
                stream = f"product:{transfer.product_id}"
                record_event(
                    WebhookEvent.STOCK_TRANSFERRED, stream, data, subscription_ids=subs, using=using
                )


def _reservation_data(reservation: Any) -> dict[str, Any]:
    location = reservation.location.code if reservation.location_id else None
    return {
        "reservation": {
            "id": reservation.pk,
            "sku": reservation.sku,
            "product_id": reservation.product_id,
            "location": location,
            "quantity": reservation.quantity,
            "reference": reservation.reference,
            "status": reservation.status,
            "expires_at": reservation.expires_at.isoformat(),
            "ended_at": reservation.ended_at.isoformat() if reservation.ended_at else None,
        },
        **_who(),
    }


def record_reservations(action: str, reservations: Sequence[Any], *, using: str) -> None:
    """``reservation.<action>`` per reservation, on its product's stream."""
    event_type = f"reservation.{action}"
    subs = subscribers(event_type, using=using)
    if not subs or not reservations:
        return
    with collecting_changes(using):
        for reservation in reservations:
            stream = (
                f"product:{reservation.product_id}"
                if reservation.product_id
                else f"reservation:{reservation.pk}"
            )
            data = _reservation_data(reservation)
            record_event(event_type, stream, data, subscription_ids=subs, using=using)


def record_pipeline_finished(run: PipelineRun, *, using: str) -> None:
    subs = subscribers(WebhookEvent.PIPELINE_FINISHED, using=using)
    if not subs:
        return
    result = run.result if isinstance(run.result, dict) else {}
    error = run.error if isinstance(run.error, dict) else None
    data = {
        "run": {
            "id": run.pk,
            "name": run.name,
            "status": run.status,
            "dry_run": run.dry_run,
            "mode": run.mode,
            "user_id": run.user_id,
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "finished_at": run.finished_at.isoformat() if run.finished_at else None,
            "rows_total": run.rows_total,
            "rows_done": run.rows_done,
            "totals": result.get("totals"),
            "error": {"kind": error.get("kind"), "detail": error.get("detail")} if error else None,
        }
    }
    stream = f"pipeline:{run.pk}"
    record_event(WebhookEvent.PIPELINE_FINISHED, stream, data, subscription_ids=subs, using=using)


# --- enqueue after commit -----------------------------------------------------------------


class _Streams(oncommit.Accumulator):
    """The (subscription, stream) pairs written in one transaction, enqueued at commit."""

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self.streams: dict[tuple[int, str], None] = {}

    def flush(self) -> None:
        enqueue_streams(list(self.streams))


def _schedule(using: str, subscription_id: int, stream: str) -> None:
    """Remember the stream for the transaction's single on_commit callback (outside a
    transaction: one callback for this stream)."""
    key = (subscription_id, stream)
    streams = oncommit.pending(using, _Streams)
    if streams is None:
        transaction.on_commit(lambda: _enqueue_one(key), using=using, robust=True)
    else:
        streams.streams[key] = None


def _enqueue_one(key: tuple[int, str]) -> None:
    enqueue_streams([key])
