"""Deletion audit: a deleted product leaves a JSON snapshot of itself and who deleted it.

The snapshot is taken in ``pre_delete`` (the row still exists) and written in
``post_delete`` (the deletion really happened), in the deleting transaction.
"""

from __future__ import annotations

import copy
import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from ..models import DeletionAudit
from .context import current_change_context


def capture_snapshot(instance: models.Model) -> None:
    """Keep the row's values as plain JSON (Decimals and datetimes as strings)."""
    held = instance.__dict__
    attnames = [f.attname for f in instance._meta.concrete_fields]
    data = {name: held.get(name) for name in attnames}
    # Deferred fields (only()/defer()) and F() values left by save(): the stored values, in
    # one read (none if the row is already gone: deleting a stale instance is no error).
    stored = [
        name for name in attnames if name not in held or hasattr(held[name], "resolve_expression")
    ]
    if stored:
        rows = type(instance)._base_manager.db_manager(instance._state.db)
        found = rows.filter(pk=instance.pk).values(*stored).first() or {}
        data.update({name: found.get(name) for name in stored})
    instance._deletion_snapshot = json.loads(DjangoJSONEncoder().encode(data))


def record_deletion(instance: models.Model, *, using: str) -> DeletionAudit:
    if getattr(instance, "_deletion_snapshot", None) is None:
        capture_snapshot(instance)
    snapshot = instance._deletion_snapshot
    ctx = current_change_context()
    return DeletionAudit.objects.using(using).create(
        model_label=instance._meta.label,
        object_pk=str(snapshot[instance._meta.pk.attname]),
        object_repr=_describe(instance, snapshot)[:300],
        snapshot=snapshot,
        deleted_at=timezone.now(),
        changed_by_id=ctx.user_id,
        source=ctx.source,
    )


def _describe(instance: models.Model, snapshot: dict) -> str:
    """``str(instance)``; fields left deferred are taken from the snapshot rather than
    loaded through the instance (the row is gone by now)."""
    if not instance.get_deferred_fields():
        return str(instance)
    stand_in = copy.copy(instance)
    stand_in.__dict__.update({k: v for k, v in snapshot.items() if k not in instance.__dict__})
    return str(stand_in)
