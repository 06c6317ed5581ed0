"""Deletion audit: a deleted product leaves a JSON snapshot of itself and who deleted it.

The snapshot is taken in ``pre_delete`` (the row still exists) and written in
``post_delete`` (the deletion really happened), in the deleting transaction. The plural
forms do the same for many objects at once (set-based deletes, ``app.models.deletes``).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connections, models
from django.utils import timezone

from ..core import encoding
from ..core.sqlrows import insert_rows, json_in
from ..models import DeletionAudit, Product
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


def record_stored_deletions(model: type[models.Model], pks: str, *, using: str) -> int:
    """``record_deletions`` of the stored rows of ``model`` whose primary keys are in the
    JSON array ``pks``, built by the database in one ``INSERT ... SELECT``: the snapshot
    holds what ``capture_snapshots`` would make of the row freshly read (the same JSON
    values: Decimals and datetimes as ``DjangoJSONEncoder`` writes them), one row per
    stored row, newest primary key first (``post_delete``'s order). For set-based deletes
    (``app.models.deletes``) of rows locked by this transaction and deleted right after it;
    a key without a row gets no audit row (nothing of it is deleted). Returns how many."""
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = model._meta
    pg = connection.vendor == "postgresql"
    pairs = []
    for field in meta.concrete_fields:
        pairs.append(f"'{field.attname}'")
        pairs.append(_json_value(field, f"o.{qn(field.column)}", pg))
    snapshot = (
        f"jsonb_build_object({', '.join(pairs)})" if pg else f"json_object({', '.join(pairs)})"
    )
    ctx = current_change_context()
    pk = f"o.{qn(meta.pk.column)}"
    described = _describe_sql(model, qn)
    text = "text" if pg else "TEXT"
    columns = ", ".join(qn(DeletionAudit._meta.get_field(name).column) for name in AUDIT_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(DeletionAudit._meta.db_table)} ({columns}) "
            f"SELECT %s, CAST({pk} AS {text}), SUBSTR({described}, 1, 300), {snapshot}, %s, %s, %s "
            f"FROM {qn(meta.db_table)} o WHERE {pk} {json_in(connection, meta.pk.cast_db_type(connection))} "
            f"ORDER BY {pk} DESC",
            [
                meta.label,
                connection.ops.adapt_datetimefield_value(timezone.now()),
                ctx.user_id,
                ctx.source,
                pks,
            ],
        )
        return cursor.rowcount


def stored_snapshots_supported(model: type[models.Model]) -> bool:
    """Whether ``record_stored_deletions`` can build ``model``'s snapshot and description
    in SQL (its field types and its ``__str__`` are known to it)."""
    return model in _DESCRIBED and all(
        isinstance(field, _JSON_TYPES) for field in model._meta.concrete_fields
    )


_JSON_TYPES = (
    models.AutoField,
    models.BigAutoField,
    models.IntegerField,  # Positive... and Small/Big too
    models.CharField,
    models.DecimalField,
    models.DateTimeField,
)


def _json_value(field: models.Field, column: str, pg: bool) -> str:
    """SQL for the JSON value ``DjangoJSONEncoder`` makes of ``field``'s value as the ORM
    reads it: integers and text as they are, a Decimal as its text with the field's places,
    an (aware, UTC) datetime as ISO 8601 to the millisecond (none if whole seconds) + Z.
    The statement has parameters: ``%`` is written ``%%``."""
    if isinstance(field, models.DecimalField):
        if pg:
            return f"CAST({column} AS text)"  # numeric(m, d) prints its d places
        return f"CASE WHEN {column} IS NULL THEN NULL ELSE printf('%%.{field.decimal_places}f', {column}) END"
    if isinstance(field, models.DateTimeField):
        if pg:
            utc = f"({column} AT TIME ZONE 'UTC')"
            return (
                f"to_char({utc}, 'YYYY-MM-DD\"T\"HH24:MI:SS') || CASE WHEN "
                f"CAST(date_part('microseconds', {utc}) AS bigint) %% 1000000 = 0 THEN '' "
                f"ELSE to_char({utc}, '.MS') END || 'Z'"
            )
        # stored as naive UTC text, 'YYYY-MM-DD HH:MM:SS[.ffffff]'
        return f"SUBSTR(REPLACE({column}, ' ', 'T'), 1, 23) || 'Z'"
    return column


def _describe_sql(model: type[models.Model], qn: Callable[[str], str]) -> str:
    """SQL for ``str()`` of a ``model`` row ``o``."""
    return _DESCRIBED[model](lambda name: f"o.{qn(model._meta.get_field(name).column)}")


_DESCRIBED: dict[type[models.Model], Callable[[Callable[[str], str]], str]] = {
    # Product.__str__: f"{self.name} ({self.sku})"
    Product: lambda col: f"{col('name')} || ' (' || {col('sku')} || ')'",
}


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
