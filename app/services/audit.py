"""Deletion audit: a deleted product leaves a JSON snapshot of itself and who deleted it.

The snapshot is taken in ``pre_delete`` (the row still exists) and written in
``post_delete`` (the deletion really happened), in the deleting transaction. The plural
forms do the same for many objects at once (set-based deletes, ``app.models.deletes``).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.utils import timezone

from ..core import encoding
from ..core.sqlrows import insert_rows
from ..models import DeletionAudit
from .context import current_change_context

AUDIT_COLUMNS = (
    "model_label", "object_pk", "object_repr", "snapshot", "deleted_at", "changed_by",
    "source",
)  # fmt: skip


def capture_snapshot(instance: models.Model) -> None:
    """Keep the row's values as plain JSON (Decimals and datetimes as strings)."""
    capture_snapshots((instance,), using=instance._state.db)


def capture_snapshots(objs: Sequence[models.Model], *, using: str | None = None) -> None:
    """``capture_snapshot`` of each of ``objs`` (one model), each snapshot kept as JSON text
    too (``_deletion_json``), for ``record_deletions``."""
    if not objs:
        return
    meta = objs[0]._meta
    attnames = [f.attname for f in meta.concrete_fields]
    default = _memoized(DjangoJSONEncoder().default)
    for instance in objs:
        held = instance.__dict__
        data = {name: held.get(name) for name in attnames}
        # Deferred fields (only()/defer()) and F() values left by save(): the stored values,
        # in one read (none if the row is already gone: deleting a stale instance is no
        # error).
        stored = [
            name
            for name in attnames
            if name not in held or hasattr(held[name], "resolve_expression")
        ]
        if stored:
            rows = type(instance)._base_manager.db_manager(instance._state.db or using)
            found = rows.filter(pk=instance.pk).values(*stored).first() or {}
            data.update({name: found.get(name) for name in stored})
        text = encoding.dumps(data, default=default)
        instance._deletion_json = text
        instance._deletion_snapshot = encoding.loads(text)


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


def record_deletions(objs: Sequence[models.Model], *, using: str) -> None:
    """``record_deletion`` of each of ``objs``: one row each, in order, inserted set-based
    (one object: ``record_deletion`` itself, whose ``create()`` sends the usual signals)."""
    if len(objs) == 1:
        record_deletion(objs[0], using=using)
        return
    missing = [obj for obj in objs if getattr(obj, "_deletion_json", None) is None]
    capture_snapshots(missing, using=using)
    ctx = current_change_context()
    now = timezone.now()
    rows = [
        (
            obj._meta.label,
            str(obj._deletion_snapshot[obj._meta.pk.attname]),
            _describe(obj, obj._deletion_snapshot)[:300],
            obj._deletion_json,
            now,
            ctx.user_id,
            ctx.source,
        )
        for obj in objs
    ]
    insert_rows(DeletionAudit, AUDIT_COLUMNS, rows, using=using)


def _memoized(default: Any) -> Any:
    """``default`` remembering what it made of each datetime: the products of one batch
    share few distinct times. A datetime's text depends on its instant and its offset."""
    found: dict[Any, Any] = {}

    def call(value: Any) -> Any:
        if type(value) is not datetime:
            return default(value)
        key = (value, value.utcoffset())
        text = found.get(key)
        if text is None:
            text = found[key] = default(value)
        return text

    return call


def _describe(instance: models.Model, snapshot: dict) -> str:
    """``str(instance)``; fields left deferred are taken from the snapshot rather than
    loaded through the instance (the row is gone by now)."""
    if not instance.get_deferred_fields():
        return str(instance)
    stand_in = copy.copy(instance)
    stand_in.__dict__.update({k: v for k, v in snapshot.items() if k not in instance.__dict__})
    return str(stand_in)
