"""The cached JSON body of ``GET /api/products/<sku>``, invalidated by every product write.

Every write path (``save()``, queryset ``update``/``bulk_update``/``bulk_create``, deletes,
both pipeline routes) ends in a change set; the cache effect (``invalidate_changes``,
registered in ``AppConfig.ready()``) invalidates the entry of each changed product's SKU
(and of its previous SKU, on a rename) once the transaction commits. How invalidation
stays safe against concurrent readers is described in ``app.services.cache_guard``.

The body also carries the Omnibus prior price, which depends on time (a reduction stops
being one 30 days after its last step), so an entry never outlives ``MAX_AGE`` nor the
moment its reduction could end. Unknown SKUs (404) are not cached.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from ..models import PriceHistory, Product
from ..tracking.changes import NOT_CREATED, ChangeSet
from . import cache_guard
from .omnibus import WINDOW, Reduction, current_reduction

MAX_AGE = 60  # seconds; also bounds staleness after a write that bypasses signals


def key_for(sku: str) -> str:
    # Hashed: a SKU may hold spaces and other characters that cache keys should not.
    return "api:product:v1:" + hashlib.sha256(sku.encode()).hexdigest()


def invalidate(skus: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> None:
    """Drop the cached bodies of ``skus`` when the current transaction commits."""
    cache_guard.invalidate([key_for(sku) for sku in skus], using=using)


def invalidate_changes(changes: ChangeSet, *, using: str = DEFAULT_DB_ALIAS) -> None:
    """The cache effect: drop the bodies of changed and deleted products (a new product
    has no cached body: 404s are not cached)."""
    if not cache_guard.enabled():
        return
    skus = set()
    for sku, old_sku in changes.values(("sku", "old_sku"), NOT_CREATED):
        skus.add(sku)
        if old_sku:
            skus.add(old_sku)
    invalidate(skus, using=using)


def detail_with_reduction(sku: str, at: datetime) -> tuple[Product, Reduction | None] | None:
    """The product and the reduction in effect at ``at``; ``None`` for an unknown SKU."""
    # sku is unique: a bare LIMIT 1, without the ORDER BY that .first() would add.
    product = next(iter(Product.objects.filter(sku=sku).order_by()[:1]), None)
    if product is None:
        return None
    return product, current_reduction(product, at)


def seconds_valid(product: Product, reduction: Reduction | None, at: datetime) -> float:
    """How long a body computed at ``at`` stays right without a write: ``MAX_AGE``, capped
    at the moment the reduction stops being one (30 days after its latest step)."""
    if reduction is None:
        # No reduction now; only a price change (a write, which invalidates) can start one.
        return MAX_AGE
    # The reduction ends WINDOW after its latest step, which is not before its first one.
    left = (reduction.started_at + WINDOW - at).total_seconds()
    if left > MAX_AGE:
        return MAX_AGE
    latest = (
        PriceHistory.objects.filter(product_id=product.pk, changed_at__lte=at)
        .order_by("-changed_at", "-id")
        .values_list("changed_at", flat=True)
        .first()
    )
    return min(MAX_AGE, (latest + WINDOW - at).total_seconds()) if latest else 0


def detail_body(
    sku: str,
    render: Callable[[Product, Reduction | None], bytes],
    entry: cache_guard.Entry | None = None,
) -> bytes | None:
    """The response body for ``sku`` (``render`` builds it on a miss); ``None`` if unknown.

    ``entry``: the cache entry of ``key_for(sku)`` if the caller fetched it already.
    """
    if not cache_guard.enabled():
        found = detail_with_reduction(sku, timezone.now())
        return render(*found) if found else None
    body, ticket = entry or cache_guard.get(key_for(sku))
    if body is not None:
        return body
    at = timezone.now()
    found = detail_with_reduction(sku, at)
    if found is None:
        return None
    body = render(*found)
    cache_guard.fill(ticket, body, seconds_valid(*found, at))
    return body
