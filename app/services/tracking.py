"""Product write paths: ``save()``'s guarded UPDATE and the queryset's bulk writes.

Every path sends ``pre_save``/``post_save`` per object, so receivers that users connect see
every change; the project's own receivers (``app.receivers``) turn each write into a change
set, which the change pipeline's effects (``app.tracking``: history and ledger, webhook
events, alerts, cache) consume. While only those adapters listen, bulk writes call their
bulk forms once instead of sending the signals per object (``_send``).

Inside ``collecting_changes()`` change sets are collected and the effects run set-based
at the end of the block, which is what makes large pipelines fast.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any

from django.db import connections, models, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from ..core.sqlrows import (
    CHUNK,
    _json_scalar,
    insert_rows,  # noqa: F401  (moved to app.core.sqlrows; old path)
    json_rows,
    json_rows_sql,
)
from ..models import TRACKED_FIELDS, Product
from ..tracking.adapters import bulk_forms
from ..tracking.batch import (
    add_row,  # noqa: F401  (moved to app.tracking.batch; old path)
    collecting_changes,
)


def _quantize(field_: models.Field, value: Any) -> Any:
    value = field_.to_python(value)
    if isinstance(field_, models.DecimalField) and isinstance(value, Decimal):
        return value.quantize(Decimal(1).scaleb(-field_.decimal_places))
    return value


PRICE_FIELD = Product._meta.get_field("price")
CENTS = Decimal(1).scaleb(-PRICE_FIELD.decimal_places)
_INT_FIELDS = tuple(
    (name, Product._meta.get_field(name)) for name in ("stock", "low_stock_threshold")
)


def normalize(product: Product) -> None:
    """Coerce assigned values to their Python types, so '10.0' and Decimal('10.00') compare equal."""
    value = product.price
    if type(value) is Decimal and value.is_finite():
        product.price = value.quantize(CENTS)  # the common case, without to_python
    elif value is not None:
        product.price = _quantize(PRICE_FIELD, value)
    for name, field_ in _INT_FIELDS:
        value = getattr(product, name)
        if value is not None and type(value) is not int:
            setattr(product, name, field_.to_python(value))


def guarded_update(product: Product, base_qs: models.QuerySet, pk_val: Any, values: list) -> bool:
    """``Model._do_update`` for Product: learn the true old values without a SELECT.

    The UPDATE is guarded by the values the instance was loaded with; if another writer
    changed them meanwhile, the row is locked and read, so history stays exact under
    concurrent writers (a SELECT only happens in that case).
    """
    written = {f.attname for f, _, _ in values}
    tracked = [name for name in TRACKED_FIELDS if name in written]
    filtered = base_qs.filter(pk=pk_val)
    if not tracked:
        product._before_write = {}
        return filtered._update(values) > 0
    loaded = getattr(product, "_loaded", None)
    if loaded is not None and all(name in loaded for name in tracked):
        expected = {name: loaded[name] for name in tracked}
        if filtered.filter(**expected)._update(values) > 0:
            product._before_write = expected
            return True
    current = filtered.select_for_update().values(*tracked).first()
    if current is None:
        return False
    product._before_write = current
    return filtered._update(values) > 0


# --- bulk write paths -------------------------------------------------------------------


def write_products(objs: Sequence[Product], fields: Iterable[str], *, using: str) -> int:
    """Write ``fields`` of already-locked ``objs`` set-based, with save()'s signals and effects.

    Each object's ``_loaded`` values must be the row's current values (the caller read them
    under ``select_for_update``): they are the "before" of the change rows. When only the
    project's adapters listen, their bulk forms run instead of per-object dispatch
    (``_send``); the change set is the same.
    """
    fields = list(dict.fromkeys([*fields, "updated_at"]))
    update_fields = frozenset(fields)
    tracked = [name for name in TRACKED_FIELDS if name in update_fields]
    now = timezone.now()
    for obj in objs:
        obj.updated_at = now
        loaded = obj._loaded
        obj._before_write = {name: loaded[name] for name in tracked}
    _send(pre_save, objs, using=using, update_fields=update_fields)
    update_rows(objs, fields, using=using)
    for obj in objs:
        obj._state.db = using
    with collecting_changes(using):
        _send(post_save, objs, using=using, created=False, update_fields=update_fields)
    attnames = CONCRETE_ATTNAMES
    for obj in objs:
        # Product.remember_current_values(), inlined: this loop runs per product. Fields
        # left deferred by a narrow read stay deferred (and out of ``_loaded``).
        values = obj.__dict__
        obj._loaded = {name: values[name] for name in attnames if name in values}
        obj._before_write = None
    return len(objs)


def _send(signal: Any, objs: Sequence[Product], *, using: str, **kwargs: Any) -> None:
    """Send ``pre_save``/``post_save`` for each object, or, when only the project's adapters
    listen (``bulk_forms``), call their bulk forms once for all."""
    forms = bulk_forms(signal)
    if forms is not None:
        created = kwargs.get("created", False)
        for form in forms:
            form(objs, using=using, created=created, update_fields=kwargs["update_fields"])
        return
    send = signal.send
    for obj in objs:
        send(sender=Product, instance=obj, raw=False, using=using, **kwargs)


CONCRETE_ATTNAMES = tuple(f.attname for f in Product._meta.concrete_fields)


def update_rows(objs: Sequence[Product], fields: Sequence[str], *, using: str) -> int:
    """One ``UPDATE ... FROM`` per chunk, the new values read from one JSON parameter
    (``json_rows``): the set-based write both databases support."""
    if not objs:
        return 0
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = Product._meta
    model_fields = [meta.get_field(name) for name in fields]
    columns = [qn(f.column) for f in model_fields]
    table = qn(meta.db_table)
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    source = json_rows_sql(
        connection, [meta.pk, *model_fields], [meta.pk.column, *(f.column for f in model_fields)]
    )
    pk = qn(meta.pk.column)
    sql = f"UPDATE {table} SET {assignments} FROM {source} WHERE {table}.{pk} = v.{pk}"
    preps = [
        (f.attname, f, {} if isinstance(f, models.DateTimeField) else None, _passthrough(f))
        for f in model_fields
    ]
    total = 0
    with connection.cursor() as cursor:
        for start in range(0, len(objs), CHUNK):
            rows = []
            for obj in objs[start : start + CHUNK]:
                values = obj.__dict__
                row = [obj.pk]
                append = row.append
                for attname, f, memo, plain in preps:
                    value = values[attname]
                    if type(value) is plain:  # what get_db_prep_save would bind
                        if plain is Decimal:
                            if not value.is_finite():
                                f.get_db_prep_save(value, connection)  # raises, as save() would
                            value = str(value)
                        append(value)
                    elif memo is None:
                        append(_json_scalar(f.get_db_prep_save(value, connection)))
                    else:  # datetimes: one shared "now" per write, adapted once
                        prepared = memo.get(value, memo)
                        if prepared is memo:
                            prepared = memo[value] = _json_scalar(
                                f.get_db_prep_save(value, connection)
                            )
                        append(prepared)
                rows.append(row)
            cursor.execute(sql, [json_rows(rows)])
            total += cursor.rowcount
    return total


def _passthrough(field_: models.Field) -> type | None:
    """The Python type whose values ``update_rows`` may send as they are, skipping the
    per-value ``get_db_prep_save`` (which returns them unchanged, or on PostgreSQL only
    wraps ints for binding, which JSON rows do not need); else None."""
    if isinstance(field_, models.DecimalField):
        return Decimal  # finite ones only: update_rows checks
    if isinstance(field_, (models.CharField, models.TextField)):
        return str
    if type(field_) in (models.IntegerField, models.PositiveIntegerField, models.BigIntegerField):
        return int
    return None


def lock_current(pks: Iterable[Any], *, using: str) -> dict[Any, Product]:
    """Lock rows by primary key and return them with their current values."""
    pks = list(pks)
    found: dict[Any, Product] = {}
    base = Product._base_manager.db_manager(using).select_for_update().order_by("pk")
    for start in range(0, len(pks), CHUNK):
        for obj in base.filter(pk__in=pks[start : start + CHUNK]):
            found[obj.pk] = obj
    return found


def tracked_queryset_update(qs: models.QuerySet, values: dict[str, Any]) -> int:
    if not values:
        raise TypeError("update() needs at least one field to set.")
    if qs.query.is_sliced:
        raise TypeError("Cannot update a query once a slice has been taken.")
    meta = qs.model._meta
    targets = [(meta.get_field(name), value) for name, value in values.items()]
    expressions = {
        f"_new_{f.attname}": models.ExpressionWrapper(v, output_field=f)
        for f, v in targets
        if hasattr(v, "resolve_expression")
    }
    using = qs.db
    with transaction.atomic(using=using):
        objs = list(qs.select_for_update().annotate(**expressions).order_by("pk"))
        for obj in objs:
            for f, v in targets:
                raw = getattr(obj, f"_new_{f.attname}") if hasattr(v, "resolve_expression") else v
                setattr(obj, f.attname, _quantize(f, raw))
        return write_products(objs, [f.attname for f, _ in targets], using=using)


def tracked_bulk_update(qs: models.QuerySet, objs: Sequence[Product], fields: Sequence[str]) -> int:
    objs = list(objs)
    if not fields:
        raise ValueError("Field names must be given to bulk_update().")
    if any(obj.pk is None for obj in objs):
        raise ValueError("All bulk_update() objects must have a primary key set.")
    names = [Product._meta.get_field(name).attname for name in fields]
    using = qs.db
    with transaction.atomic(using=using):
        current = lock_current([obj.pk for obj in objs], using=using)
        present = []
        for obj in objs:
            row = current.get(obj.pk)
            if row is None:
                continue
            obj._loaded = {**(getattr(obj, "_loaded", None) or {}), **row._loaded}
            normalize(obj)
            present.append(obj)
        return write_products(present, names, using=using)


def tracked_bulk_create(
    qs: models.QuerySet,
    objs: Sequence[Product],
    *,
    batch_size: int | None,
    ignore_conflicts: bool,
    update_conflicts: bool,
    update_fields: Sequence[str] | None,
    unique_fields: Sequence[str] | None,
) -> list[Product]:
    objs = list(objs)
    using = qs.db
    base_create = models.QuerySet.bulk_create
    with transaction.atomic(using=using):
        existing: dict[Any, Product] = {}
        attr = "sku"
        if ignore_conflicts or update_conflicts:
            key = (unique_fields or ["sku"])[0]
            if len(unique_fields or ["sku"]) != 1 or key not in ("sku", "id", "pk"):
                raise ValueError("Product upserts are keyed by 'sku' or 'pk' (unique_fields).")
            attr = "pk" if key in ("id", "pk") else "sku"
            keys = [getattr(obj, attr) for obj in objs]
            for start in range(0, len(keys), CHUNK):
                lookup = {f"{attr}__in": keys[start : start + CHUNK]}
                for row in (
                    Product._base_manager.db_manager(using).select_for_update().filter(**lookup)
                ):
                    existing[getattr(row, attr)] = row
            new = [obj for obj in objs if getattr(obj, attr) not in existing]
            matched = [obj for obj in objs if getattr(obj, attr) in existing]
        else:
            new, matched = objs, []
        now = timezone.now()
        for obj in new:
            normalize(obj)
            obj.created_at = obj.created_at or now
            obj.updated_at = now
        _send(pre_save, new, using=using, update_fields=None)
        if new:
            # Known conflicts were split off above; ignore_conflicts is not passed on because
            # PostgreSQL then returns no primary keys, and the new rows need theirs.
            base_create(
                qs,
                new,
                batch_size=batch_size or CHUNK,
                update_conflicts=update_conflicts,
                update_fields=update_fields,
                unique_fields=unique_fields,
            )
        upserted: list[Product] = []
        if update_conflicts and matched:
            names = [Product._meta.get_field(name).attname for name in update_fields or []]
            for obj in matched:
                row = existing[getattr(obj, attr)]
                for f in Product._meta.concrete_fields:
                    if f.attname not in names:
                        setattr(obj, f.attname, getattr(row, f.attname))
                obj._loaded = row._loaded
                obj._state.adding = False
                normalize(obj)
                upserted.append(obj)
        with collecting_changes(using):
            written = []
            for obj in new:
                obj._state.adding = False
                obj._state.db = using
                if obj.pk is not None:  # else skipped by ignore_conflicts: nothing was written
                    written.append(obj)
            _send(post_save, written, using=using, created=True, update_fields=None)
            for obj in written:
                obj.remember_current_values()
            if upserted:
                write_products(upserted, names, using=using)
    return objs
