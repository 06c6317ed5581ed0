"""The project's own signal receivers. Thin by design: each calls one domain service.

They are connected once, in ``AppConfig.ready()``, with a ``dispatch_uid``. The ``Product``
save and delete receivers are the adapters from a signal to the change pipeline
(``app.tracking``): they describe the write as change rows, and the registered effects
(history and ledger, webhook events, alerts, cache) do the rest. ``bulk_form`` marks
each adapter with its form for many objects, which bulk writes call instead of sending
the signal per object while only adapters listen.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .models import Product, deletes, writes
from .services import audit, permissions, tokens, users
from .services.alerts import close_alerts_of_deleted
from .tracking import batch, changes
from .tracking.adapters import bulk_form


def normalize_all(objs: Sequence[Product], **kwargs: Any) -> None:
    for obj in objs:
        writes.normalize(obj)


def record_saved(
    objs: Sequence[Product], *, using: str, created: bool, update_fields: Any = None
) -> None:
    batch.record(changes.saved(objs, created=created, update_fields=update_fields), using=using)


@bulk_form(normalize_all)
def product_pre_save(sender, instance, raw=False, **kwargs) -> None:
    if not raw:
        writes.normalize(instance)


@bulk_form(record_saved)
def product_post_save(
    sender, instance, created, raw=False, using=None, update_fields=None, **kwargs
) -> None:
    if not raw:
        record_saved(
            (instance,),
            using=using or instance._state.db or "default",
            created=created,
            update_fields=update_fields,
        )


def before_deleting(
    objs: Sequence[Product], *, using: str, stored: str | None = None, **kwargs: Any
) -> None:
    """``stored`` (set-based deletes, ``app.models.deletes``): ``objs`` are the stored rows
    whose keys that JSON array lists, locked and deleted right after; their audit rows are
    then built by the database from the rows themselves, now, instead of after the delete
    from Python snapshots (one per row deleted, none for a key without a row)."""
    # Earlier changes of these rows take effect before they go. ``Product.delete()`` and
    # the queryset's did it before collecting; this serves ``deletes.delete_rows`` and a
    # collector reached another way (nothing pending: nothing done).
    batch.flush_open()
    if stored is not None and audit.stored_snapshots_supported(Product):
        audit.record_stored_deletions(Product, stored, using=using)
    else:
        if stored is None:  # Django's delete(): a stale instance's row may be gone
            objs = deletes.lock_stored(objs, using=using, origin=kwargs.get("origin"))
        audit.capture_snapshots(objs, using=using)
    close_alerts_of_deleted(objs, using=using)


def record_deleted(
    objs: Sequence[Product], *, using: str, stored: str | None = None, **kwargs: Any
) -> None:
    if stored is None:
        objs = deletes.deleted_here(objs)
        if not objs:
            return  # nothing was deleted: no change, no audit
    batch.record([changes.deleted(obj) for obj in objs], using=using)
    if stored is None or not audit.stored_snapshots_supported(Product):
        audit.record_deletions(objs, using=using)


@bulk_form(before_deleting)
def product_pre_delete(sender, instance, using=None, origin=None, **kwargs) -> None:
    before_deleting((instance,), using=using or instance._state.db or "default", origin=origin)


@bulk_form(record_deleted)
def product_post_delete(sender, instance, using, **kwargs) -> None:
    record_deleted((instance,), using=using)


def user_post_save(sender, instance, created, raw=False, **kwargs) -> None:
    if created and not raw:
        users.on_user_created(instance)


def api_token_saved(sender, instance, created, using, **kwargs) -> None:
    if not created:
        tokens.forget_token(instance, using=using)


def api_token_deleted(sender, instance, using, **kwargs) -> None:
    tokens.forget_token(instance, using=using)


def permissions_changed(sender, using=None, action=None, **kwargs) -> None:
    """A user's or group's permissions, a group, a permission or a content type changed,
    or migrations ran (``post_migrate``: they write through historical models, whose
    signals nothing here hears): the cached permissions (app.services.permissions) are void."""
    if action is None or action.startswith("post_"):
        permissions.forget_all(using=using or "default")


def user_saved_forget_tokens(sender, instance, created, using, **kwargs) -> None:
    """A user changed (deactivated, demoted, ...): its cached token identities and its cached
    permissions are void."""
    if not created:
        tokens.forget_user_tokens(instance, using=using)
        permissions.forget_user(instance, using=using)
