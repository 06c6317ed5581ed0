"""Atomic stock adjustments with idempotency keys.

The service only decides *whether* a move may happen and sets the new stock under a row
lock; the ledger row (``StockMovement``, carrying the idempotency key), alerts and history
are written by the change-tracking core from ``Product.save()``, so there is one way to
record a movement. The unique idempotency key is the arbiter when two identical requests
race: the loser's insert fails and it returns the winner's movement instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import IntegrityError, transaction

from ..models import MAX_STOCK, Product, StockMovement
from .context import change_context


class StockAdjustmentRefused(Exception):
    """A stock move that would break a rule; ``stock`` is the product's current stock."""

    def __init__(self, message: str, *, stock: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.stock = stock


class InsufficientStock(StockAdjustmentRefused):
    pass


class StockLimitExceeded(StockAdjustmentRefused):
    pass


class IdempotencyKeyReused(StockAdjustmentRefused):
    """The key was already used for a different product or delta."""


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
) -> StockAdjustment:
    """Add ``delta`` to a product's stock, atomically and never below zero.

    With an ``idempotency_key``, applying the same request again changes nothing and
    returns the first movement (``replayed=True``). Raises ``Product.DoesNotExist`` for an
    unknown SKU and a ``StockAdjustmentRefused`` subclass when the move is not allowed.
    """
    if delta == 0:
        raise ValueError("delta must not be zero")
    sku = product_or_sku.sku if isinstance(product_or_sku, Product) else product_or_sku
    key = idempotency_key or None
    if key is not None:
        earlier = _replay(key, sku, delta)
        if earlier is not None:
            return earlier
    try:
        with transaction.atomic():
            product = Product.objects.select_for_update().get(sku=sku)
            if key is not None:
                # A concurrent request with this key may have committed while we waited.
                earlier = _replay(key, sku, delta)
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
            product.stock = new_stock
            with change_context(user=user, reason=reason, idempotency_key=key):
                product.save()
            movements = StockMovement.objects.filter(product=product)
            if key is not None:
                movements = movements.filter(idempotency_key=key)
            return StockAdjustment(movement=movements.latest("created_at", "id"), replayed=False)
    except IntegrityError:
        # Same key inserted by a concurrent request (on another product row, so the row
        # lock did not serialise us): its movement is the answer.
        if key is not None:
            earlier = _replay(key, sku, delta)
            if earlier is not None:
                return earlier
        raise


def _replay(key: str, sku: str, delta: int) -> StockAdjustment | None:
    movement = StockMovement.objects.filter(idempotency_key=key).first()
    if movement is None:
        return None
    if movement.sku != sku or movement.delta != delta:
        current = Product.objects.filter(sku=sku).values_list("stock", flat=True).first()
        raise IdempotencyKeyReused(
            f"Idempotency key already used for {movement.sku} with delta {movement.delta:+d}.",
            stock=current,
        )
    return StockAdjustment(movement=movement, replayed=True)
