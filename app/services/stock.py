"""Atomic stock adjustments with idempotency keys.

The service only decides *whether* a move may happen and sets the new stock under a row
lock; the ledger row (``StockMovement``, carrying the idempotency key), alerts and history
are written by the change-tracking core from ``Product.save()``, so there is one way to
record a movement. The unique idempotency key is the arbiter when two identical requests
race: the loser's insert fails and it returns the winner's movement instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, connections, transaction
from django.db.models import F, OuterRef, QuerySet, Subquery, Sum
from django.utils import timezone

from .. import conf
from ..core.sqlrows import json_rows, json_rows_sql
from ..models import MAX_STOCK, Location, Product, Reservation, StockLevel, StockMovement
from ..signals import stock_transferred
from ..tracking import history
from ..tracking.levels import default_location_id
from . import alerts, product_cache
from .context import change_context


class StockAdjustmentRefused(Exception):
    """A stock move that would break a rule; ``stock`` is the product's current stock (or
    what is available for the move). ``field`` names the input at fault; the API answers
    ``status``."""

    status = 409

    def __init__(self, message: str, *, stock: int | None = None, field: str = "delta") -> None:
        super().__init__(message)
        self.message = message
        self.stock = stock
        self.field = field


class InsufficientStock(StockAdjustmentRefused):
    pass


class StockLimitExceeded(StockAdjustmentRefused):
    pass


class IdempotencyKeyReused(StockAdjustmentRefused):
    """The key was already used for a different product or delta."""


class UnknownLocation(StockAdjustmentRefused):
    """No such location, or (as a destination) a deactivated one: invalid input."""

    status = 422


def location_for(
    code: str | None, *, moving_in: bool = True, field: str = "location"
) -> Location | None:
    """The location with ``code`` (None: none named). Stock may leave a deactivated
    location but not arrive at one."""
    if code is None:
        return None
    location = Location.objects.filter(code=code).first()
    if location is None:
        raise UnknownLocation(f"No location with code {code!r}.", field=field)
    if moving_in and not location.active:
        raise UnknownLocation(f"Location {code!r} is deactivated.", field=field)
    return location


def held(product_id: int, location_id: int | None = None) -> int:
    """Units held by active, unexpired reservations of a product (at one location when
    ``location_id`` is given; else all of the product's holds)."""
    holds = Reservation.objects.filter(
        product_id=product_id, status=Reservation.Status.ACTIVE, expires_at__gt=timezone.now()
    )
    if location_id is not None:
        holds = holds.filter(location_id=location_id)
    return holds.aggregate(n=Sum("quantity"))["n"] or 0


@dataclass(frozen=True)
class LocationStock:
    code: str
    name: str
    active: bool
    quantity: int
    reserved: int
    available: int
    low_stock_threshold: int | None = None


def availability(product: Product) -> tuple[int, list[LocationStock]]:
    """What a product can still promise (on hand minus active holds, never below zero),
    and the same per location (holds naming no location count only for the product)."""
    # One query (the product page's stock facts): each level with the units held at its
    # location and, the same on every row, at the whole product. ``Product.reserved``
    # counts the units of the product's active holds (due or not), moved in the transaction
    # of every hold's change: at 0 there is no hold to count, and the levels are read
    # alone (most products; the sums made this the page's costliest query to build).
    levels = StockLevel.objects.filter(product_id=product.pk).select_related("location")
    if product.reserved:
        active = Reservation.objects.filter(
            product_id=product.pk, status=Reservation.Status.ACTIVE, expires_at__gt=timezone.now()
        )
        levels = levels.annotate(
            here=_units(active.filter(location_id=OuterRef("location_id"))), total=_units(active)
        )
    places = []
    total: int | None = None if product.reserved else 0
    for level in levels:
        reserved = 0
        if product.reserved:
            reserved, total = level.here or 0, level.total or 0
        places.append(
            LocationStock(
                code=level.location.code,
                name=level.location.name,
                active=level.location.active,
                quantity=level.quantity,
                reserved=reserved,
                available=max(level.quantity - reserved, 0),
                low_stock_threshold=level.low_stock_threshold,
            )
        )
    places.sort(key=lambda place: place.code)
    if total is None:  # no level carried it; without levels the stock is 0 (nothing to hold)
        total = (active.aggregate(n=Sum("quantity"))["n"] or 0) if product.stock > 0 else 0
    return max(product.stock - total, 0), places


def _units(holds: QuerySet[Reservation]) -> Subquery:
    """The units of ``holds`` (one product's) as a scalar subquery; NULL when none."""
    return Subquery(holds.order_by().values("product_id").annotate(n=Sum("quantity")).values("n"))


def level_of(product_id: int, location_id: int) -> int:
    found = StockLevel.objects.filter(product_id=product_id, location_id=location_id)
    return found.values_list("quantity", flat=True).first() or 0


@dataclass(frozen=True)
class StockAdjustment:
    movement: StockMovement
    replayed: bool


def adjust_stock(
    product_or_sku: Product | str,
    delta: int,
    *,
    user,
    reason: str,
    idempotency_key: str | None = None,
    location: str | None = None,
) -> StockAdjustment:
    """Add ``delta`` to a product's stock, atomically and never below zero, at the location
    with code ``location`` (None: the default location). A removal may not take the stock
    (of the product, and of the location) below what active reservations hold.

    With an ``idempotency_key``, applying the same request again changes nothing and
    returns the first movement (``replayed=True``). Raises ``Product.DoesNotExist`` for an
    unknown SKU and a ``StockAdjustmentRefused`` subclass when the move is not allowed.
    """
    if delta == 0:
        raise ValueError("delta must not be zero")
    sku = product_or_sku.sku if isinstance(product_or_sku, Product) else product_or_sku
    key = idempotency_key or None
    if key is not None:
        earlier = _replay(key, sku, delta, location)
        if earlier is not None:
            return earlier
    place = location_for(location, moving_in=delta > 0)
    try:
        with transaction.atomic():
            product = Product.objects.select_for_update().get(sku=sku)
            if key is not None:
                # A concurrent request with this key may have committed while we waited.
                earlier = _replay(key, sku, delta, location)
                if earlier is not None:
                    return earlier
            new_stock = product.stock + delta
            if new_stock < 0:
                raise InsufficientStock(
                    f"Not enough stock: {product.stock} in stock, cannot remove {-delta}.",
                    stock=product.stock,
                )
            if new_stock > MAX_STOCK:
                raise StockLimitExceeded(
                    f"Stock would exceed the maximum of {MAX_STOCK}.", stock=product.stock
                )
            location_id = place.pk if place is not None else default_location_id()
            if delta < 0:
                _check_removal(product, location_id, -delta, named=place is not None)
            product.stock = new_stock
            with change_context(
                user=user, reason=reason, idempotency_key=key, location_id=location_id
            ):
                product.save()
            movements = StockMovement.objects.filter(product=product)
            if key is not None:
                movements = movements.filter(idempotency_key=key)
            return StockAdjustment(movement=movements.latest("created_at", "id"), replayed=False)
    except IntegrityError:
        # Same key inserted by a concurrent request (on another product row, so the row
        # lock did not serialise us): its movement is the answer.
        if key is not None:
            earlier = _replay(key, sku, delta, location)
            if earlier is not None:
                return earlier
        raise


def set_location_threshold(
    product_or_sku: Product | str, code: str, threshold: int | None
) -> StockLevel:
    """Give the product its own low-stock threshold at one location (None: none), and open
    or resolve that location's episode at once."""
    sku = product_or_sku.sku if isinstance(product_or_sku, Product) else product_or_sku
    place = location_for(code, moving_in=False)
    with transaction.atomic():
        product = Product.objects.select_for_update().get(sku=sku)
        level, _ = StockLevel.objects.get_or_create(
            product_id=product.pk, location_id=place.pk, defaults={"quantity": 0}
        )
        level.low_stock_threshold = threshold
        level.save(update_fields=["low_stock_threshold"])
        alerts.reconcile_location_alerts([product.pk])
        product_cache.invalidate([product.sku])
    return level


def _check_removal(product: Product, location_id: int, quantity: int, *, named: bool) -> None:
    """Refuse removing ``quantity`` at a location that has less, or that active
    reservations need (``stock`` in the refusal: what may still be removed)."""
    at = level_of(product.pk, location_id)
    free = min(at - held(product.pk, location_id), product.stock - held(product.pk))
    if quantity > at:
        where = "there" if named else "at the default location"
        raise InsufficientStock(
            f"Not enough stock {where}: {at} held, cannot remove {quantity}.", stock=max(free, 0)
        )
    if quantity > free:
        raise InsufficientStock(
            f"Not enough unreserved stock: {max(free, 0)} available, cannot remove {quantity}.",
            stock=max(free, 0),
        )


@dataclass(frozen=True)
class Transfer:
    sku: str
    source: Location
    target: Location
    quantity: int
    movements: list[StockMovement]
    replayed: bool
    product_id: int | None = None


def transfer_stock(
    product_or_sku: Product | str,
    source: str,
    target: str,
    quantity: int,
    *,
    user,
    reason: str = "",
    idempotency_key: str | None = None,
) -> Transfer:
    """Move ``quantity`` units of a product from location ``source`` to ``target`` (codes).

    Two ledger rows in one transaction; the total does not change, so no low-stock alert
    or product event follows (a ``stock.transferred`` webhook does). Under the product's
    row lock, like every stock move of the product, and with a conditional ``UPDATE ...
    WHERE quantity >= n`` at the source, so the source never goes below zero nor below
    what its reservations hold. Idempotent by key (the source row carries it).
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    sku = product_or_sku.sku if isinstance(product_or_sku, Product) else product_or_sku
    key = idempotency_key or None
    if key is not None:
        earlier = _replay_transfer(key, sku, source, target, quantity)
        if earlier is not None:
            return earlier
    origin = location_for(source, moving_in=False, field="from_location")
    destination = location_for(target, field="to_location")
    if origin.pk == destination.pk:
        raise UnknownLocation("Source and target are the same location.", field="to_location")
    try:
        with transaction.atomic():
            product = Product.objects.select_for_update().get(sku=sku)
            if key is not None:
                earlier = _replay_transfer(key, sku, source, target, quantity)
                if earlier is not None:
                    return earlier
            free = level_of(product.pk, origin.pk) - held(product.pk, origin.pk)
            moved = 0
            if quantity <= free:
                moved = StockLevel.objects.filter(
                    product_id=product.pk, location_id=origin.pk, quantity__gte=quantity
                ).update(quantity=F("quantity") - quantity)
            if not moved:
                raise InsufficientStock(
                    f"Not enough available stock at {origin.code}: {max(free, 0)}, "
                    f"cannot move {quantity}.",
                    stock=max(free, 0),
                    field="quantity",
                )
            level, created = StockLevel.objects.get_or_create(
                product_id=product.pk, location_id=destination.pk, defaults={"quantity": quantity}
            )
            if not created:
                StockLevel.objects.filter(pk=level.pk).update(quantity=F("quantity") + quantity)
            with change_context(user=user, idempotency_key=key):
                movements = history.record_transfer(
                    product_id=product.pk,
                    sku=product.sku,
                    source_id=origin.pk,
                    target_id=destination.pk,
                    quantity=quantity,
                    stock=product.stock,
                    reason=reason or f"transfer {origin.code} -> {destination.code}",
                )
            transfer = Transfer(
                product.sku, origin, destination, quantity, movements, False, product.pk
            )
            alerts.reconcile_location_alerts([product.pk])  # the total's alert cannot change
            stock_transferred.send(Product, transfers=[transfer], using="default")
            product_cache.invalidate([product.sku])
            return transfer
    except IntegrityError:
        if key is not None:
            earlier = _replay_transfer(key, sku, source, target, quantity)
            if earlier is not None:
                return earlier
        raise


def transfer_many(
    quantities: dict[str, int], source: str, target: str, *, using: str = "default"
) -> tuple[list[tuple[str, str]], int]:
    """``transfer_stock`` for many products at once, set-based (the pipelines'
    ``transfer_stock`` step). The moves are staged in a temporary table; the products are
    locked (primary-key order) and every move checked in SQL first: if any SKU is unknown
    or has fewer units available at the source (on hand minus its holds there) than asked,
    nothing is written and the problems are returned as ``(sku, message)``. Else the levels
    move with one statement per side, the ledger gets two rows per product (one
    ``INSERT ... SELECT`` per side) and each product a ``stock.transferred`` event. Returns
    ``(problems, products moved)``.
    """
    origin = location_for(source, moving_in=False, field="from_location")
    destination = location_for(target, field="to_location")
    if origin.pk == destination.pk:
        raise UnknownLocation("Source and target are the same location.", field="to_location")
    connection = connections[using]
    qn = connection.ops.quote_name
    pg = connection.vendor == "postgresql"
    level = qn(StockLevel._meta.db_table)
    product = qn(Product._meta.db_table)
    holds = qn(Reservation._meta.db_table)
    typed = "%s::bigint" if pg else "%s"
    stage = TRANSFER_STAGE
    now = timezone.now()
    text = StockMovement._meta.get_field("sku")
    n_field = StockLevel._meta.get_field("quantity")
    # In a transaction of its own if the caller has none: on PostgreSQL the stage is dropped
    # at commit (ON COMMIT DROP), so no pooled server connection carries it to another client.
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {stage} (ord integer PRIMARY KEY, sku text NOT NULL, "
            "n integer NOT NULL, pid bigint, stock integer)" + (" ON COMMIT DROP" if pg else "")
        )
        cursor.execute(f"CREATE INDEX IF NOT EXISTS {stage}_pid ON {stage} (pid)")
        cursor.execute(f"DELETE FROM {stage}")
        rows_sql = json_rows_sql(connection, [n_field, text, n_field], ["ord", "sku", "n"])
        items = list(quantities.items())
        for start in range(0, len(items), _CHUNK):
            chunk = [
                [start + i, sku, n] for i, (sku, n) in enumerate(items[start : start + _CHUNK])
            ]
            cursor.execute(
                f"INSERT INTO {stage} (ord, sku, n) SELECT v.ord, v.sku, v.n FROM {rows_sql}",
                [json_rows(chunk)],
            )
        if pg:  # SQLite: the transaction holds the database's write lock already
            cursor.execute(
                f"SELECT p.id FROM {product} p WHERE p.sku IN (SELECT sku FROM {stage}) "
                "ORDER BY p.id FOR UPDATE"
            )
        cursor.execute(
            f"UPDATE {stage} SET pid = (SELECT p.id FROM {product} p WHERE p.sku = {stage}.sku), "
            f"stock = (SELECT p.stock FROM {product} p WHERE p.sku = {stage}.sku)"
        )
        cursor.execute(f"SELECT sku FROM {stage} WHERE pid IS NULL ORDER BY ord LIMIT 50")
        problems = [(sku, f"unknown SKU {sku!r}") for (sku,) in cursor.fetchall()]
        if problems:
            return problems, 0
        free = (
            f"COALESCE((SELECT l.quantity FROM {level} l WHERE l.product_id = s.pid "
            f"AND l.location_id = {typed}), 0) - COALESCE((SELECT SUM(r.quantity) FROM {holds} r "
            f"WHERE r.product_id = s.pid AND r.location_id = {typed} AND r.status = 'active' "
            f"AND r.expires_at > %s), 0)"
        )
        at = connection.ops.adapt_datetimefield_value(now)
        cursor.execute(
            f"SELECT s.sku, s.n, {free} FROM {stage} s WHERE s.n > {free} ORDER BY s.ord LIMIT 50",
            [origin.pk, origin.pk, at, origin.pk, origin.pk, at],
        )
        problems = [
            (sku, f"only {max(f, 0)} of {sku} available at {origin.code}, not {n}")
            for sku, n, f in cursor.fetchall()
        ]
        if problems:
            return problems, 0
        for location_id, sign in ((origin.pk, "-"), (destination.pk, "+")):
            cursor.execute(
                f"UPDATE {level} SET quantity = quantity {sign} (SELECT t.n FROM {stage} t "
                f"WHERE t.pid = {level}.product_id) WHERE location_id = {typed} "
                f"AND product_id IN (SELECT pid FROM {stage})",
                [location_id],
            )
        cursor.execute(
            f"INSERT INTO {level} (product_id, location_id, quantity) SELECT t.pid, {typed}, "
            f"t.n FROM {stage} t WHERE NOT EXISTS (SELECT 1 FROM {level} o "
            f"WHERE o.product_id = t.pid AND o.location_id = {typed})",
            [destination.pk, destination.pk],
        )
        history.record_staged_transfer(
            stage,
            origin.pk,
            destination.pk,
            reason=f"transfer {origin.code} -> {destination.code}",
            at=now,
            using=using,
        )
        cursor.execute(f"SELECT pid, sku, n FROM {stage} ORDER BY ord")
        moved = cursor.fetchall()
        cursor.execute(f"DELETE FROM {stage}")
    transfers = [Transfer(sku, origin, destination, n, [], False, pk) for pk, sku, n in moved]
    stock_transferred.send(Product, transfers=transfers, using=using)
    alerts.reconcile_location_alerts([pk for pk, _, _ in moved], using=using)
    product_cache.invalidate([sku for _, sku, _ in moved], using=using)
    return [], len(moved)


TRANSFER_STAGE = "stockpipe_transfer_stage"
_CHUNK = 2000


def _replay_transfer(
    key: str, sku: str, source: str, target: str, quantity: int
) -> Transfer | None:
    out = StockMovement.objects.filter(idempotency_key=key).select_related("location").first()
    if out is None:
        return None
    pair = (
        StockMovement.objects.filter(
            product_id=out.product_id,
            created_at=out.created_at,
            delta=-out.delta,
            pk__gt=out.pk,
        )
        .select_related("location")
        .order_by("pk")
        .first()
    )
    if (
        pair is None
        or out.sku != sku
        or out.delta != -quantity
        or out.location.code != source
        or pair.location.code != target
    ):
        raise IdempotencyKeyReused(
            f"Idempotency key already used for another move of {out.sku}.",
            field="idempotency_key",
        )
    return Transfer(sku, out.location, pair.location, quantity, [out, pair], True)


def _replay(key: str, sku: str, delta: int, location: str | None) -> StockAdjustment | None:
    """The movement an earlier request with ``key`` made, if it was this same request (same
    SKU, delta and location, and not a transfer, whose source row carries the key too)."""
    movement = StockMovement.objects.filter(idempotency_key=key).select_related("location").first()
    if movement is None:
        return None
    transfer = (
        StockMovement.objects.filter(
            product_id=movement.product_id, created_at=movement.created_at, delta=-movement.delta
        )
        .exclude(pk=movement.pk)
        .exists()
    )
    place = location or conf.default_location()
    if (
        movement.sku != sku
        or movement.delta != delta
        or movement.location.code != place
        or transfer
    ):
        current = Product.objects.filter(sku=sku).values_list("stock", flat=True).first()
        raise IdempotencyKeyReused(
            f"Idempotency key already used for {movement.sku} with delta {movement.delta:+d}.",
            stock=current,
        )
    return StockAdjustment(movement=movement, replayed=True)
