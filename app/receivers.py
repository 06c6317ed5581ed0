"""The project's own signal receivers. Thin by design: each calls one domain service.

They are connected once, in ``AppConfig.ready()``, with a ``dispatch_uid``.
"""

from __future__ import annotations

from .services import alerts, audit, product_cache, tokens, tracking, users


def product_pre_save(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        tracking.normalize(instance)


def product_post_save(sender, instance, created, raw=False, **kwargs) -> None:
    if not raw:
        tracking.record_saved(instance, created=created)


def product_pre_delete(sender, instance, **kwargs) -> None:
    audit.capture_snapshot(instance)
    alerts.close_alerts_of_deleted(instance)


def product_post_delete(sender, instance, using, **kwargs) -> None:
    audit.record_deletion(instance, using=using)


def user_post_save(sender, instance, created, raw=False, **kwargs) -> None:
    if created and not raw:
        users.on_user_created(instance)


def product_cache_saved(sender, instance, created, using, **kwargs) -> None:
    # A new product has no cached body (404s are not cached); renames and changes do.
    if not created:
        product_cache.product_written(instance, using=using)


def product_cache_deleted(sender, instance, using, **kwargs) -> None:
    product_cache.product_written(instance, using=using)


def api_token_saved(sender, instance, created, using, **kwargs) -> None:
    if not created:
        tokens.forget_token(instance, using=using)


def api_token_deleted(sender, instance, using, **kwargs) -> None:
    tokens.forget_token(instance, using=using)


def user_saved_forget_tokens(sender, instance, created, using, **kwargs) -> None:
    if not created:
        tokens.forget_user_tokens(instance, using=using)
