"""Deletion audit: a deleted product leaves a JSON snapshot of itself and who deleted it.

The snapshot is taken in ``pre_delete`` (the row still exists) and written in
``post_delete`` (the deletion really happened), in the deleting transaction.
"""

from __future__ import annotations

import json

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from ..models import DeletionAudit
from .context import current_change_context


def capture_snapshot(instance: models.Model) -> None:
    """Keep the row's values as plain JSON (Decimals and datetimes as strings)."""
    data = {f.attname: f.value_from_object(instance) for f in instance._meta.concrete_fields}
    computed = [name for name, value in data.items() if hasattr(value, "resolve_expression")]
    if computed:  # an F() left on the instance by save(): the stored value is what goes
        rows = type(instance)._base_manager.db_manager(instance._state.db)
        data.update(rows.filter(pk=instance.pk).values(*computed).first() or {})
    instance._deletion_snapshot = json.loads(DjangoJSONEncoder().encode(data))


def record_deletion(instance: models.Model, *, using: str) -> DeletionAudit:
    if getattr(instance, "_deletion_snapshot", None) is None:
        capture_snapshot(instance)
    snapshot = instance._deletion_snapshot
    ctx = current_change_context()
    return DeletionAudit.objects.using(using).create(
        model_label=instance._meta.label,
        object_pk=str(snapshot[instance._meta.pk.attname]),
        object_repr=str(instance)[:300],
        snapshot=snapshot,
        deleted_at=timezone.now(),
        changed_by_id=ctx.user_id,
        source=ctx.source,
    )
