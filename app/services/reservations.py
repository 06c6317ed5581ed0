"""Reservations: stock held for an order before it ships, never more than there is.

``available = on hand - active holds``, per product and per location (a hold naming a
location counts there and for the product; one naming none only for the product). The
held units are kept in counters, ``Product.reserved`` and ``StockLevel.reserved`` (the
units of the active holds, due or not yet swept), moved in the transaction of every
transition: a hold is one conditional ``UPDATE ... SET reserved = reserved + q WHERE
stock - reserved >= q RETURNING ...`` (the availability check and the product's row lock
in one statement, no sum over the holds), and the same on the location's level when it
names one; so concurrent holds of one product are serialised and none can oversell. A
hold that does not fit expires the product's holds past due (as the sweep does) and is
tried once more, so a hold past due never blocks one; still too little: refused (409)
with what is available. Stock moves, transfers and commits run under the product's row
lock (``SELECT ... FOR UPDATE``) and check what the unexpired holds leave.

A hold ends once, in one transaction with its counters: ``commit`` consumes its stock
(ledger rows through the change pipeline, reason naming the reservation), ``release``
gives it back, ``expire_due`` ends those past ``expires_at``. Each ending is a conditional
``UPDATE ... WHERE status = 'active'`` under the product's row lock (the sweep locks a
batch's products first, in primary-key order, then claims its reservations ``FOR UPDATE
SKIP LOCKED``), so two sweeps, or a sweep and a commit, end each reservation once. A
deleted product's holds keep their status; its counters go with its row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.db import IntegrityError, connection, transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from django_tasks_db import DatabaseBackend

from .. import conf
from ..core import jobs
from ..core.context import current_change_context
from ..models import Location, Product, Reservation, StockLevel
from ..signals import reservations_changed
from ..tracking.levels import default_location_id
from . import alerts, product_cache
from .context import change_context
from .stock import (
    IdempotencyKeyReused,
    InsufficientStock,
    StockAdjustmentRefused,
    held,
    level_of,
    location_for,
)

ACTIVE = Reservation.Status.ACTIVE
SWEEP_BATCH = 500
_PRODUCT = Product._meta.db_table
_LEVEL = StockLevel._meta.db_table
# What a hold's UPDATE returns: what the reservation and the alert reconcile read.
# (In the model's field order: Model.from_db expects it.)
_RETURNED = tuple(
    f.attname
    for f in Product._meta.concrete_fields
    if f.attname in {"id", "sku", "name", "stock", "reserved", "low_stock_threshold"}
)

# A new reservation's INSERT (``_insert``): every concrete field but the primary key.
_INSERTED = tuple(f for f in Reservation._meta.concrete_fields if not f.primary_key)
_INSERT_SQL = "INSERT INTO {} ({}) VALUES ({}) RETURNING {}".format(
    connection.ops.quote_name(Reservation._meta.db_table),
    ", ".join(connection.ops.quote_name(f.column) for f in _INSERTED),
    ", ".join(["%s"] * len(_INSERTED)),
    connection.ops.quote_name(Reservation._meta.pk.column),
)


class ReservationRefused(InsufficientStock):
    """Not enough available stock; ``stock`` is what is available."""


class ReservationClosed(StockAdjustmentRefused):
    """The reservation already ended otherwise (released, expired, committed)."""


class InvalidReservation(StockAdjustmentRefused):
    """Input no reservation can have (an ``expires_at`` not in the future): invalid input,
    422 like every other, naming the field."""

    status = 422


@dataclass(frozen=True)
class ReservationResult:
    reservation: Reservation
    replayed: bool


def reserve(
    product_or_sku: Product | str,
    quantity: int,
    *,
    user,
    reference: str = "",
    location: str | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> ReservationResult:
    """Hold ``quantity`` units of a product (at location code ``location``, if given) until
    ``expires_at`` (default: now + ``STOCKPIPE_RESERVATION_TTL``). Idempotent by key: the
    same request again returns the first reservation (``replayed=True``)."""
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    sku = product_or_sku.sku if isinstance(product_or_sku, Product) else product_or_sku
    key = idempotency_key or None
    if key is not None:
        earlier = _replay(key, sku, quantity, location, reference, expires_at)
        if earlier is not None:
            return earlier
    place = location_for(location, moving_in=False)
    now = timezone.now()
    asked = expires_at  # what a replay compares: left out matches any (``_replay``)
    expires_at = expires_at or now + timedelta(seconds=conf.reservation_ttl())
    if expires_at <= now:
        raise InvalidReservation("expires_at must be in the future.", field="expires_at")
    expires_at = expires_at.astimezone(UTC)  # as stored and read back, whatever offset given
    ctx = current_change_context()
    changed_by = _user_id(user, ctx.user_id)
    try:
        with transaction.atomic():
            # The product's cached body is tombstoned now, before the row lock is taken,
            # not under it (a Redis round trip every other hold would wait for); the
            # tombstone also covers the commit (cache_guard). A refused or unknown SKU costs
            # a needless tombstone.
            product_cache.invalidate([sku])
            product, free = _take(sku, place, quantity, now)
            if product is not None:
                reservation = Reservation(
                    product=product,
                    sku=product.sku,
                    location=place,
                    quantity=quantity,
                    reference=reference,
                    expires_at=expires_at,
                    idempotency_key=key,
                    created_at=now,
                    changed_by_id=changed_by,
                    source=ctx.source,
                )
                _insert(reservation)
                _alert_after_hold(product, place, now)
                reservations_changed.send(
                    Reservation, action="created", reservations=[reservation], using="default"
                )
                _schedule_expiry(expires_at)
                return ReservationResult(reservation, False)
    except IntegrityError:
        # The same idempotency key committed first (its unique index): this transaction,
        # counters included, rolled back; answer with that reservation.
        if key is not None:
            earlier = _replay(key, sku, quantity, location, reference, asked)
            if earlier is not None:
                return earlier
        raise
    # Refused: the due holds the retry expired stay expired (their transaction committed).
    where = f" at {place.code}" if place is not None else ""
    raise ReservationRefused(
        f"Not enough available stock{where}: {free}, cannot reserve {quantity}.",
        stock=free,
        field="quantity",
    )


def commit(reservation_id: int, *, user) -> ReservationResult:
    """Consume the held stock and end the hold, in one transaction. Committing a committed
    reservation again changes nothing (``replayed=True``)."""
    with transaction.atomic():
        reservation, product = _locked(reservation_id)
        if reservation.status == Reservation.Status.COMMITTED:
            return ReservationResult(reservation, True)
        _check_open(reservation)
        reason = f"reservation {reservation.pk} committed"
        if reservation.reference:
            reason += f" ({reservation.reference})"
        for location_id, n in _sources(product, reservation):
            product.stock -= n
            with change_context(user=user, reason=reason, location_id=location_id):
                product.save()
        _finish(reservation, Reservation.Status.COMMITTED)
        _unhold([reservation])
        _ended(product, "committed", [reservation])
        return ReservationResult(reservation, False)


def release(reservation_id: int, *, user) -> ReservationResult:
    """End the hold without consuming stock; releasing again changes nothing."""
    with transaction.atomic():
        reservation, product = _locked(reservation_id)
        if reservation.status == Reservation.Status.RELEASED:
            return ReservationResult(reservation, True)
        _check_open(reservation)
        _finish(reservation, Reservation.Status.RELEASED)
        _unhold([reservation])
        _ended(product, "released", [reservation])
        return ReservationResult(reservation, False)


def expire_due(now: datetime | None = None, *, batch: int = SWEEP_BATCH) -> int:
    """Expire every active reservation past ``expires_at``; returns how many this call
    expired. Each batch is one transaction: it locks the batch's products (primary-key
    order, before any reservation, as every stock operation does), then claims the
    reservations still active with ``FOR UPDATE SKIP LOCKED`` and a conditional ``UPDATE``,
    so each reservation expires once (a killed sweep leaves whole batches), and moves the
    counters and reconciles the alerts under those locks. Reservations another transaction
    holds locked are passed over, not read again until their locks go (a batch of only such
    rows would otherwise be re-read in a tight loop): the next sweep expires them."""
    now = now or timezone.now()
    total = 0
    passed_over: set[int] = set()
    while True:
        due = Reservation.objects.filter(status=ACTIVE, expires_at__lte=now)
        left = due.exclude(pk__in=passed_over) if passed_over else due
        rows = list(left.order_by("expires_at", "pk").values_list("pk", "product_id")[:batch])
        if not rows:
            return total
        with transaction.atomic():
            pks = sorted({pk for _, pk in rows if pk is not None})
            products = list(Product.objects.select_for_update().filter(pk__in=pks).order_by("pk"))
            expired = _expire(due.filter(pk__in=[pk for pk, _ in rows]), now)
            if products:
                alerts.reconcile_alerts(products)
                alerts.reconcile_location_alerts([p.pk for p in products])
        total += len(expired)
        ended = {r.pk for r in expired}
        passed_over.update(pk for pk, _ in rows if pk not in ended)
        if len(rows) < batch:
            return total


@dataclass(frozen=True)
class Drift:
    """A counter that differs from the units its active holds add up to."""

    sku: str
    location: str | None  # None: the product's counter (all its holds)
    counter: int
    held: int


def recount(*, fix: bool = False) -> list[Drift]:
    """The counters (``Product.reserved``, ``StockLevel.reserved``) that differ from the
    units of their active holds, each compared in one statement (one snapshot: a hold
    moves its counter and writes its row in one transaction). With ``fix``, each drifted
    product is corrected in a transaction of its own under its row lock (every change of
    holds takes it, so nothing moves while it is recounted), its levels too, and its
    alerts and cached detail follow. Should never find anything; returns what it found."""
    drifted = _drifted()
    if fix:
        for product_id in sorted({pk for pk, _ in drifted}):
            _recount_product(product_id)
    return [d for _, d in drifted]


def _held_units(**outer: str) -> Coalesce:
    units = (
        Reservation.objects.filter(status=ACTIVE, **{k: OuterRef(v) for k, v in outer.items()})
        .order_by()
        .values(*outer)
        .annotate(n=Sum("quantity"))
        .values("n")
    )
    return Coalesce(Subquery(units), Value(0))


def _drifted() -> list[tuple[int, Drift]]:
    products = (
        Product.objects.annotate(held=_held_units(product_id="pk"))
        .exclude(reserved=F("held"))
        .order_by("pk")
        .values_list("pk", "sku", "reserved", "held")
    )
    levels = (
        StockLevel.objects.annotate(
            held=_held_units(product_id="product_id", location_id="location_id")
        )
        .exclude(reserved=F("held"))
        .order_by("product_id", "location__code")
        .values_list("product_id", "product__sku", "location__code", "reserved", "held")
    )
    found = [(pk, Drift(sku, None, counter, held)) for pk, sku, counter, held in products]
    found += [(pk, Drift(sku, code, c, h)) for pk, sku, code, c, h in levels]
    return found


def _recount_product(product_id: int) -> None:
    with transaction.atomic():
        product = Product.objects.select_for_update().filter(pk=product_id).first()
        if product is None:
            return
        active = Reservation.objects.filter(product_id=product_id, status=ACTIVE).order_by()
        total = active.aggregate(n=Sum("quantity"))["n"] or 0
        Product.objects.filter(pk=product_id).update(reserved=total)
        at = dict(
            active.filter(location__isnull=False)
            .values("location_id")
            .annotate(n=Sum("quantity"))
            .values_list("location_id", "n")
        )
        for level in StockLevel.objects.filter(product_id=product_id):
            if level.reserved != at.get(level.location_id, 0):
                StockLevel.objects.filter(pk=level.pk).update(reserved=at.get(level.location_id, 0))
        product.reserved = total
        alerts.reconcile_alerts([product])
        alerts.reconcile_location_alerts([product_id])
        product_cache.invalidate([product.sku])


# --- helpers -----------------------------------------------------------------------------


def _take(
    sku: str, place: Location | None, quantity: int, now: datetime
) -> tuple[Product | None, int]:
    """Hold ``quantity`` units in the counters: one conditional ``UPDATE ... RETURNING`` of
    the product (the availability check and its row lock in one statement), and one of the
    location's level when a location is named. Returns the product as updated, or ``None``
    and what is available. When too little is free, the product's holds past due may be
    what is missing (they no longer count): they expire here, as the sweep would, and the
    hold is tried once more."""
    product = _hold(sku, place, quantity)
    if product is not None:
        return product, 0
    locked = Product.objects.select_for_update().get(sku=sku)  # unknown SKU: DoesNotExist
    due = Reservation.objects.filter(product_id=locked.pk, status=ACTIVE, expires_at__lte=now)
    if _expire(due, now):
        alerts.reconcile_alerts([locked])
        alerts.reconcile_location_alerts([locked.pk])
        product = _hold(sku, place, quantity)
        if product is not None:
            return product, 0
    free = locked.stock - _counter(Product, pk=locked.pk)
    if place is not None:
        level = StockLevel.objects.filter(product_id=locked.pk, location_id=place.pk)
        at = level.values_list("quantity", "reserved").first() or (0, 0)
        free = min(free, at[0] - at[1])
    return None, max(free, 0)


def _alert_after_hold(product: Product, place: Location | None, now: datetime) -> None:
    """A hold only lowers what is available, so it can open an episode, never resolve
    one: the product's is reconciled (from the counter) only when it is now low on
    available stock, the locations' when the hold names one (a hold naming none does not
    count at any location) or when holds past due were expired here (theirs may have named
    locations). Nothing to do under the lock otherwise.

    The counter still counts holds past due that no sweep has ended yet; when it says
    "low", those are expired first (as the sweep would, under this lock), so an episode
    opens only for what is really held, rather than one the next sweep resolves."""
    if conf.low_stock_on_available():
        if product.stock - product.reserved < product.low_stock_threshold:
            due = Reservation.objects.filter(
                product_id=product.pk, status=ACTIVE, expires_at__lte=now
            )
            expired = _expire(due, now)
            if expired:
                product.reserved = _counter(Product, pk=product.pk)
            alerts.reconcile_alerts([product], held={product.pk: product.reserved})
            if expired and place is None:  # they may have held units at locations (as _take)
                alerts.reconcile_location_alerts([product.pk])
        if place is not None:
            alerts.reconcile_location_alerts([product.pk])


def _hold(sku: str, place: Location | None, quantity: int) -> Product | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {_PRODUCT} SET reserved = reserved + %s "
            "WHERE sku = %s AND stock - reserved >= %s "
            f"RETURNING {', '.join(_RETURNED)}",
            [quantity, sku, quantity],
        )
        row = cursor.fetchone()
        if row is None:
            return None
        product = Product.from_db("default", _RETURNED, row)
        if place is None:
            return product
        cursor.execute(
            f"UPDATE {_LEVEL} SET reserved = reserved + %s "
            "WHERE product_id = %s AND location_id = %s AND quantity - reserved >= %s",
            [quantity, product.pk, place.pk, quantity],
        )
        if cursor.rowcount == 1:
            return product
        # Not there: give the product's units back (its row is locked by this transaction).
        cursor.execute(
            f"UPDATE {_PRODUCT} SET reserved = reserved - %s WHERE id = %s",
            [quantity, product.pk],
        )
    return None


def _insert(reservation: Reservation) -> None:
    """``save()`` of a new reservation, as Django does it (``pre_save``, the ``INSERT``, the
    primary key, ``post_save`` with ``created``), without the query compiler: one statement
    built once, the values prepared by their fields as the compiler would. The insert is a
    fifth of a hold's CPU through the ORM."""
    using = "default"
    pre_save.send(Reservation, instance=reservation, raw=False, using=using, update_fields=None)
    values = [f.get_db_prep_save(f.pre_save(reservation, True), connection) for f in _INSERTED]
    with connection.cursor() as cursor:
        cursor.execute(_INSERT_SQL, values)
        reservation.pk = cursor.fetchone()[0]
    reservation._state.adding = False
    reservation._state.db = using
    post_save.send(
        Reservation, instance=reservation, created=True, update_fields=None, raw=False, using=using
    )


def _counter(model, **where) -> int:
    return model.objects.filter(**where).values_list("reserved", flat=True).first() or 0


def _unhold(reservations: list[Reservation]) -> None:
    """Ended holds leave the counters: the product's, and the level's of those naming a
    location (a deleted product's holds have no counter left)."""
    by_product: dict[int, int] = {}
    by_level: dict[tuple[int, int], int] = {}
    for r in reservations:
        if r.product_id is None:
            continue
        by_product[r.product_id] = by_product.get(r.product_id, 0) + r.quantity
        if r.location_id is not None:
            key = (r.product_id, r.location_id)
            by_level[key] = by_level.get(key, 0) + r.quantity
    with connection.cursor() as cursor:
        for pk, n in sorted(by_product.items()):
            cursor.execute(f"UPDATE {_PRODUCT} SET reserved = reserved - %s WHERE id = %s", [n, pk])
        for (pk, location_id), n in sorted(by_level.items()):
            cursor.execute(
                f"UPDATE {_LEVEL} SET reserved = reserved - %s "
                "WHERE product_id = %s AND location_id = %s",
                [n, pk, location_id],
            )


def _expire(due: QuerySet[Reservation], now: datetime) -> list[Reservation]:
    """Expire the still-active reservations of ``due`` (callers hold their products' row
    locks): claimed ``FOR UPDATE SKIP LOCKED``, ended by a conditional ``UPDATE``, taken
    out of the counters; events and cached details follow. The sweep and a reservation
    that finds too little both end due holds here."""
    claimed = due.filter(status=ACTIVE).select_for_update(skip_locked=True, of=("self",))
    ids = list(claimed.values_list("pk", flat=True))
    if not ids:
        return []
    Reservation.objects.filter(pk__in=ids, status=ACTIVE).update(
        status=Reservation.Status.EXPIRED, ended_at=now
    )
    expired = list(
        Reservation.objects.filter(
            pk__in=ids, status=Reservation.Status.EXPIRED, ended_at=now
        ).order_by("pk")
    )
    _unhold(expired)
    by_product: dict[int | None, list[Reservation]] = {}
    for reservation in expired:
        by_product.setdefault(reservation.product_id, []).append(reservation)
    for rows in by_product.values():
        reservations_changed.send(Reservation, action="expired", reservations=rows, using="default")
    product_cache.invalidate({r.sku for r in expired})
    return expired


def _user_id(user, fallback: int | None) -> int | None:
    if user is not None and getattr(user, "is_authenticated", False):
        return user.pk
    return fallback


def _locked(reservation_id: int) -> tuple[Reservation, Product]:
    """The reservation and its product, both locked: the product first, as every stock
    operation does, so two operations never wait on each other in opposite orders."""
    found = Reservation.objects.filter(pk=reservation_id).values_list("product_id").first()
    if found is None:
        raise Reservation.DoesNotExist(f"No reservation {reservation_id}.")
    product = Product.objects.select_for_update().filter(pk=found[0]).first()
    reservation = Reservation.objects.select_for_update().get(pk=reservation_id)
    if product is None:  # the product was deleted: the hold is void
        raise ReservationClosed(
            f"Reservation {reservation_id}'s product was deleted.", field="status"
        )
    return reservation, product


def _check_open(reservation: Reservation) -> None:
    if reservation.status != ACTIVE:
        raise ReservationClosed(
            f"Reservation {reservation.pk} is {reservation.status}.", field="status"
        )
    if reservation.expires_at <= timezone.now():
        raise ReservationClosed(f"Reservation {reservation.pk} has expired.", field="status")


def _sources(product: Product, reservation: Reservation) -> list[tuple[int, int]]:
    """Where a commit takes its units from: the reservation's location, or (naming none)
    the default location first, then the others by code, each only as far as other
    reservations there leave free (holds at the reservation's own location are served first
    come, first served). Too few (a stock count found less than is held): refused like a
    hold that does not fit, naming ``quantity``, with what is available to this commit."""
    n = reservation.quantity
    if reservation.location_id is not None:
        there = level_of(product.pk, reservation.location_id)
        if there < n:
            raise _cannot_commit(reservation, there)
        return [(reservation.location_id, n)]
    default = default_location_id()
    levels = list(
        StockLevel.objects.filter(product_id=product.pk, quantity__gt=0)
        .select_related("location")
        .values_list("location_id", "location__code", "quantity")
    )
    levels.sort(key=lambda row: (row[0] != default, row[1]))
    taken = []
    for location_id, _, quantity in levels:
        free = quantity - held(product.pk, location_id)
        part = min(n, free)
        if part > 0:
            taken.append((location_id, part))
            n -= part
        if n == 0:
            return taken
    raise _cannot_commit(reservation, reservation.quantity - n)


def _cannot_commit(reservation: Reservation, available: int) -> ReservationRefused:
    available = max(available, 0)
    where = f" at {reservation.location.code}" if reservation.location_id else ""
    return ReservationRefused(
        f"Not enough available stock{where} to commit reservation {reservation.pk}: "
        f"{available}, it holds {reservation.quantity}.",
        stock=available,
        field="quantity",
    )


def _finish(reservation: Reservation, status: str) -> None:
    now = timezone.now()
    updated = Reservation.objects.filter(pk=reservation.pk, status=ACTIVE).update(
        status=status, ended_at=now
    )
    if not updated:  # cannot happen under the lock; refuse rather than end it twice
        raise ReservationClosed(f"Reservation {reservation.pk} already ended.", field="status")
    reservation.status, reservation.ended_at = status, now


def _ended(product: Product, action: str, reservations: list[Reservation]) -> None:
    """What follows a change of holds: the product's low-stock alert follows its available
    stock (the product row is locked), events, the cached detail."""
    alerts.reconcile_alerts([product])
    alerts.reconcile_location_alerts([product.pk])
    reservations_changed.send(
        Reservation, action=action, reservations=reservations, using="default"
    )
    product_cache.invalidate([product.sku])


# A hold's sweep runs at its ``expires_at`` rounded up to the whole second: one sweep serves
# every hold due in that second, so a process that has committed the task of a second's
# sweep enqueues no other for it (``_scheduled``). Only for a sweep at least ``_SPARE_AHEAD``
# away, measured when the hold is written (the last thing before its commit), not when its
# request began: a hold that waited on its product's row lock may be written after the sweep
# of its second has run; a hold closer to due always commits its own task.
_SPARE_AHEAD = timedelta(seconds=60)
_scheduled: datetime | None = None  # the latest sweep this process committed a task for


def _schedule_expiry(expires_at: datetime) -> None:
    """Ask a worker to sweep when the hold falls due (backends that can defer a task;
    ``manage.py expire_reservations`` from cron is the safety net either way), unless this
    process already committed a task for the same sweep. Called in the hold's transaction:
    the database backend's task row is written in it (the hold and its expiry commit
    together); any other backend is asked once the hold has committed, so no worker sweeps
    for a hold that rolled back. The sweep counts as scheduled only once its task is
    committed (or handed over), so a rolled-back hold spares no later one its task."""
    due = expires_at.replace(microsecond=0)
    if due < expires_at:
        due += timedelta(seconds=1)
    # Spared only if the hold's own transaction is the outermost one (it commits right
    # after): a caller's transaction around reserve() may commit after the sweep has run.
    if (
        due == _scheduled
        and not transaction.get_connection().savepoint_ids
        and due - timezone.now() >= _SPARE_AHEAD
    ):
        return
    task = jobs.task("expire_reservations")
    backend = task.get_backend()
    if not backend.supports_defer:
        return
    deferred = task.using(run_after=due)
    if isinstance(backend, DatabaseBackend) and transaction.get_connection().in_atomic_block:
        deferred.enqueue()
        transaction.on_commit(lambda: _mark_scheduled(due))
        return

    def enqueue() -> None:
        deferred.enqueue()
        _mark_scheduled(due)

    transaction.on_commit(enqueue, robust=True)


def _mark_scheduled(due: datetime | None) -> None:
    global _scheduled
    _scheduled = due


def forget_scheduled_sweeps() -> None:
    """This process's memory of committed sweep tasks goes: for tests, whose teardown
    removes committed task rows that production never removes before they have run."""
    _mark_scheduled(None)


def _replay(
    key: str,
    sku: str,
    quantity: int,
    location: str | None,
    reference: str,
    expires_at: datetime | None,
) -> ReservationResult | None:
    """The reservation an earlier request with ``key`` made, if it asked for the same (an
    ``expires_at`` left out means "the default", so it matches any)."""
    earlier = Reservation.objects.filter(idempotency_key=key).select_related("location").first()
    if earlier is None:
        return None
    code = earlier.location.code if earlier.location_id else None
    if (
        earlier.sku != sku
        or earlier.quantity != quantity
        or code != location
        or earlier.reference != reference
        or (expires_at is not None and earlier.expires_at != expires_at)
    ):
        raise IdempotencyKeyReused(
            f"Idempotency key already used for reservation {earlier.pk} "
            f"({earlier.sku} x{earlier.quantity}).",
            field="idempotency_key",
        )
    return ReservationResult(earlier, True)
