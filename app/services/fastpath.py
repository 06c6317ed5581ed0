"""Set-based stand-ins for the project's own ``Product`` save receivers.

Bulk writes (``tracking.write_products``, ``bulk_create``) send ``pre_save``/``post_save``
per object so that receivers users connect see every change. When only the project's own
receivers are connected, that per-object dispatch buys nothing: their effects (normalised
values, history/ledger tuples, alert checks, webhook outbox rows) can be produced for a
whole chunk at once. Each known receiver is registered here with its bulk equivalent; a
write uses the bulk equivalents only if *every* live receiver of the signal has one, and
falls back to per-object dispatch otherwise (a user receiver, an async receiver, or one of
ours connected twice), so receivers are always called exactly as ``save()`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db.models.signals import ModelSignal, post_save, pre_save

from ..models import Product, WebhookEvent

# handler(objs, *, using, created, update_fields): the effect of sending the signal for each
# of ``objs`` (in order) to the receiver it stands for.
BulkHandler = Callable[..., None]

_registry: dict[ModelSignal, dict[Callable[..., Any], BulkHandler]] | None = None


def _normalize_all(objs: Sequence[Product], **kwargs: Any) -> None:
    from .tracking import normalize

    for obj in objs:
        normalize(obj)


def _record_all(objs: Sequence[Product], *, created: bool, **kwargs: Any) -> None:
    from .tracking import record_saved_many

    record_saved_many(objs, created=created)


def _invalidate_cached(
    objs: Sequence[Product], *, using: str, created: bool, **kwargs: Any
) -> None:
    """``receivers.product_cache_saved`` for many: one invalidation of all their SKUs."""
    from . import cache_guard, product_cache

    # A new product has no cached body; with caching off, invalidation is a no-op.
    if not created and cache_guard.enabled():
        product_cache.products_written(objs, using=using)


def _webhook_product_saved(receiver: Callable[..., Any]) -> BulkHandler:
    """The outbox receiver writes nothing unless someone subscribed to the product events
    (``outbox.subscribers`` is a cached dict lookup); if someone did, it is called per
    object, exactly as the signal would."""
    from ..webhooks import outbox

    def handler(
        objs: Sequence[Product], *, using: str, created: bool, update_fields: Any = None
    ) -> None:
        if created:
            wanted = bool(outbox.subscribers(WebhookEvent.PRODUCT_CREATED.value, using=using))
        else:
            wanted = outbox.wants_product_updates(using)
        if not wanted:
            return
        for obj in objs:
            receiver(
                signal=post_save,
                sender=Product,
                instance=obj,
                created=created,
                update_fields=update_fields,
                raw=False,
                using=using,
            )

    return handler


def _build() -> dict[ModelSignal, dict[Callable[..., Any], BulkHandler]]:
    from .. import receivers
    from ..webhooks import receivers as webhook_receivers

    registry: dict[ModelSignal, dict[Callable[..., Any], BulkHandler]] = {
        pre_save: {receivers.product_pre_save: _normalize_all},
        post_save: {receivers.product_post_save: _record_all},
    }
    saved = getattr(webhook_receivers, "product_saved", None)
    if saved is not None:
        registry[post_save][saved] = _webhook_product_saved(saved)
    cache_saved = getattr(receivers, "product_cache_saved", None)
    if cache_saved is not None:
        registry[post_save][cache_saved] = _invalidate_cached
    return registry


def bulk_handlers(signal: ModelSignal) -> list[BulkHandler] | None:
    """The bulk equivalents of the receivers ``signal`` would call for a ``Product``, in
    connection order; ``None`` when any of them has none (then dispatch per object)."""
    global _registry
    if _registry is None:
        _registry = _build()
    known = _registry.get(signal, {})
    sync, asynchronous = signal._live_receivers(Product)
    if asynchronous:
        return None
    handlers: list[BulkHandler] = []
    for receiver in sync:
        handler = known.get(receiver)
        if handler is None or handler in handlers:
            return None
        handlers.append(handler)
    return handlers


def saves_are_bulk() -> bool:
    """True when neither ``pre_save`` nor ``post_save`` of ``Product`` reaches a receiver
    outside the project: bulk writers may then skip building full instances for them."""
    return bulk_handlers(pre_save) is not None and bulk_handlers(post_save) is not None


def rows_suffice() -> bool:
    """True when a ``Product`` write needs no instances at all: only the project's own
    receivers listen to saves and nobody to instance creation. Set-based SQL may then do
    the write (it writes the webhook outbox rows itself)."""
    from django.db.models.signals import post_init, pre_init

    return (
        saves_are_bulk()
        and not pre_init.has_listeners(Product)
        and not post_init.has_listeners(Product)
    )
