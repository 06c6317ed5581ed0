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

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from typing import Any

from django.db import connections, models, router, transaction
from django.db.models.signals import post_save, pre_save
from django.utils import timezone

from ..core.sqlrows import CHUNK, _json_scalar, json_rows, json_rows_sql
from .dispatch import bulk_forms
from .models import TRACKED_FIELDS, Product, remember_written


# How a bulk write groups the change sets its signals produce, so the effects run once,
# set-based, at the end of the write: ``app.tracking.batch.collecting_changes``, installed
# by ``AppConfig.ready()`` (the tracking layer sits above the models).
def _no_collector(using: str) -> AbstractContextManager[Any]:
    return nullcontext()


def _nothing_collected() -> None:
    return None


_collect_changes: Callable[[str], AbstractContextManager[Any]] = _no_collector
_flush_collected: Callable[[], None] = _nothing_collected


def collect_changes_with(
    collect: Callable[[str], AbstractContextManager[Any]], flush: Callable[[], None]
) -> None:
    """Install the change collector the bulk writes open around their signals, and what
    runs the effects of the changes it has collected so far (before a delete)."""
    global _collect_changes, _flush_collected
    _collect_changes, _flush_collected = collect, flush


def collecting_changes(using: str) -> AbstractContextManager[Any]:
    return _collect_changes(using)


def flush_collected() -> None:
    """Called by ``Product.delete()`` and the queryset's ``delete()`` before Django's
    ``Collector`` collects anything: the effects of the changes collected so far run now.
    While a receiver listens to a related model's deletes (``StockLevel``), the collector
    loads those rows before any ``pre_delete``; without a batch the change's level row was
    written at the change, so it must exist by then in a batch too."""
    _flush_collected()


def _quantize(field_: models.Field, value: Any, rounding: str | None = None) -> Any:
    value = field_.to_python(value)
    if isinstance(field_, models.DecimalField) and isinstance(value, Decimal):
        return value.quantize(Decimal(1).scaleb(-field_.decimal_places), rounding=rounding)
    return value


def decimal_rounding(using: str) -> str:
    """How plain Django ends up rounding a Decimal with more places than its column:
    PostgreSQL's numeric rounds half away from zero (Django sends the value as it is);
    for SQLite Django quantizes half-even itself. Product rounds the same way, so it stores
    what plain Django would, and history compares the stored values."""
    return ROUND_HALF_UP if connections[using].vendor == "postgresql" else ROUND_HALF_EVEN


PRICE_FIELD = Product._meta.get_field("price")
CENTS = Decimal(1).scaleb(-PRICE_FIELD.decimal_places)
_INT_FIELDS = tuple(
    (name, Product._meta.get_field(name)) for name in ("stock", "low_stock_threshold")
)


def normalize(product: Product) -> None:
    """Coerce assigned values to their Python types, so '10.0' and Decimal('10.00') compare
    equal, rounded as the database would store them (``decimal_rounding``). Expressions
    (``F("stock") - 1``) are left for the database to compute, deferred fields unloaded."""
    held = product.__dict__
    value = held.get("price")
    if value is not None and not hasattr(value, "resolve_expression"):
        using = product._state.db or router.db_for_write(Product, instance=product)
        rounding = decimal_rounding(using)
        if type(value) is Decimal and value.is_finite():
            product.price = value.quantize(CENTS, rounding=rounding)  # without to_python
        else:
            product.price = _quantize(PRICE_FIELD, value, rounding)
    for name, field_ in _INT_FIELDS:
        value = held.get(name)
        if (
            value is not None
            and type(value) is not int
            and not hasattr(value, "resolve_expression")
        ):
            setattr(product, name, field_.to_python(value))


def guarded_update(product: Product, base_qs: models.QuerySet, pk_val: Any, values: list) -> bool:
    """``Model._do_update`` for Product: learn the true old values without a SELECT.

    The UPDATE is guarded by the values the instance was loaded with; if another writer
    changed them meanwhile, the row is locked and read, so history stays exact under
    concurrent writers (a SELECT only happens in that case). Values assigned as
    expressions (``F("stock") - 1``) are computed by that locked read, so history and
    ``post_save`` see the numbers the database stores. So do tracked fields the save
    leaves out (``update_fields``) while the instance holds another value for them (an
    unsaved change, an ``F()``, a stale value): alerts follow the stored row.
    ``Product.save()`` puts the instance's own values back afterwards (``_restore``).
    """
    written = {f.attname: f for f, _, _ in values}
    tracked = [name for name in TRACKED_FIELDS if name in written]
    if not tracked:
        product._before_write = {}
        return base_qs.filter(pk=pk_val)._update(values) > 0
    computed = {f.attname: v for f, _, v in values if hasattr(v, "resolve_expression")}
    loaded = getattr(product, "_loaded", None) or {}
    held = product.__dict__
    kept = [name for name in TRACKED_FIELDS if name not in written and name in held]
    guard = [*tracked, *kept]
    if not computed and all(
        name in loaded and (name in written or held[name] == loaded[name]) for name in guard
    ):
        expected = {name: loaded[name] for name in guard}
        # The common case compiles no query (``_update_if_unchanged``): no QuerySet is
        # built for it either (a filter() per save was a tenth of a save's Python).
        updated = _update_if_unchanged(base_qs.db, pk_val, values, expected)
        if updated is None:
            updated = base_qs.filter(pk=pk_val, **expected)._update(values)
        if updated > 0:
            product._before_write = {name: expected[name] for name in tracked}
            return True
    filtered = base_qs.filter(pk=pk_val)
    new = {
        f"_new_{name}": models.ExpressionWrapper(value, output_field=written[name])
        for name, value in computed.items()
    }
    current = filtered.select_for_update().annotate(**new).values(*guard, *new).first()
    if current is None:
        return False
    product._before_write = {name: current[name] for name in tracked}
    if not filtered._update(values):
        return False
    shown = {name: current[f"_new_{name}"] for name in computed}
    shown.update((name, current[name]) for name in kept)
    rounding = decimal_rounding(filtered.db)
    restore = {}
    for name, value in shown.items():
        field_ = Product._meta.get_field(name)
        restore[name] = held[name]
        setattr(product, name, _quantize(field_, value, rounding))
    if restore:
        product._restore = restore
    return True


_GUARDED_UPDATES: dict[tuple, str] = {}


def _update_if_unchanged(db: str, pk_val: Any, values: list, expected: dict) -> int | None:
    """The guarded UPDATE of ``save()``'s common case (plain values, the row as loaded) as
    SQL built once per shape: the statement and parameters Django's compiler would make
    for ``filter(pk=..., **expected)._update(values)``, without compiling a query per save
    (most of a save's cost on SQLite). ``None`` where only the compiler knows: expressions,
    NULLs, model instances, fields with their own placeholder."""
    connection = connections[db]
    params, columns = [], []
    for field, _model, value in values:
        if (
            value is None
            or hasattr(value, "resolve_expression")
            or hasattr(value, "prepare_database_save")
            or hasattr(field, "get_placeholder")
        ):
            return None
        params.append(field.get_db_prep_save(value, connection=connection))
        columns.append(field.column)
    meta = Product._meta
    guards = (meta.pk, *(meta.get_field(name) for name in expected))
    for field, value in zip(guards, (pk_val, *expected.values()), strict=True):
        if value is None:
            return None
        params.append(field.get_db_prep_value(field.get_prep_value(value), connection, True))
    key = (db, connection.vendor, tuple(columns), tuple(expected))
    sql = _GUARDED_UPDATES.get(key)
    if sql is None:
        qn = connection.ops.quote_name
        assignments = ", ".join(f"{qn(column)} = %s" for column in columns)
        where = " AND ".join(f"{qn(field.column)} = %s" for field in guards)
        sql = _GUARDED_UPDATES[key] = f"UPDATE {qn(meta.db_table)} SET {assignments} WHERE {where}"
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.rowcount


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
    for obj in objs:
        # Product.remember_current_values(fields), inlined: this loop runs per product. The
        # other fields keep their loaded values (an instance may hold unsaved changes).
        values, loaded = obj.__dict__, obj._loaded
        for name in fields:
            if name in values:
                loaded[name] = values[name]
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
    """``QuerySet.update()``: lock and read the rows the queryset selects, compute the new
    values in that read (expressions included), then write them with signals and history.

    The rows are selected by primary key from the queryset (``pk__in``), so ``values()``,
    ordered, distinct and annotated querysets select exactly the rows Django would update,
    and the locking read itself stays a plain ``SELECT ... FOR UPDATE``.
    """
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
    selected = qs.model._base_manager.db_manager(using).filter(pk__in=qs.values("pk"))
    rounding = decimal_rounding(using)
    with transaction.atomic(using=using):
        objs = list(selected.select_for_update().annotate(**expressions).order_by("pk"))
        for obj in objs:
            for f, v in targets:
                raw = getattr(obj, f"_new_{f.attname}") if hasattr(v, "resolve_expression") else v
                setattr(obj, f.attname, _quantize(f, raw, rounding))
        return write_products(objs, [f.attname for f, _ in targets], using=using)


def tracked_bulk_update(
    qs: models.QuerySet,
    objs: Sequence[Product],
    fields: Sequence[str],
    batch_size: int | None = None,
) -> int:
    """``bulk_update()``: the rows are locked and read (the instances may be stale), values
    assigned as expressions (``F("stock") + 1``) are computed against the locked row, and
    as in Django's ``CASE WHEN pk = ...`` the first instance of a row in a batch wins (a
    row given twice is written once per batch it appears in, and counted so)."""
    if batch_size is not None and batch_size <= 0:
        raise ValueError("Batch size must be a positive integer.")
    objs = list(objs)
    if not fields:
        raise ValueError("Field names must be given to bulk_update().")
    if any(obj.pk is None for obj in objs):
        raise ValueError("All bulk_update() objects must have a primary key set.")
    model_fields = [Product._meta.get_field(name) for name in fields]
    if any(not f.concrete or f.many_to_many for f in model_fields):
        raise ValueError("bulk_update() can only be used with concrete fields.")
    if any(f.primary_key for f in model_fields):
        raise ValueError("bulk_update() cannot be used with primary key fields.")
    if not objs:
        return 0
    names = [f.attname for f in model_fields]
    for obj in objs:  # as Django does: a deferred field is loaded (and may be gone) first
        for name in names:
            getattr(obj, name)
    using = qs.db
    batches = [objs]
    if len({obj.pk for obj in objs}) < len(objs):  # only then do Django's batches matter
        pk = Product._meta.pk
        size = connections[using].ops.bulk_batch_size([pk, pk, *model_fields], objs)
        size = min(batch_size, size) if batch_size else size
        batches = [objs[start : start + size] for start in range(0, len(objs), size)]
    count = 0
    written: list[Product] = []
    with transaction.atomic(using=using):
        for batch in batches:
            present = _update_batch(batch, model_fields, using=using)
            count += len(present)
            written.extend(present)
    remember_written(written, names, using=using)
    return count


def _update_batch(
    objs: Sequence[Product], model_fields: Sequence[models.Field], *, using: str
) -> list[Product]:
    """Lock, compute and write one ``bulk_update`` batch; return the objects written."""
    current = lock_current([obj.pk for obj in objs], using=using)
    present = []
    taken: set[Any] = set()
    for obj in objs:
        row = current.get(obj.pk)
        if row is None or obj.pk in taken:
            continue
        taken.add(obj.pk)
        obj._loaded = {**(getattr(obj, "_loaded", None) or {}), **row._loaded}
        present.append(obj)
    expressions = _compute_expressions(present, model_fields, using=using)
    names = [f.attname for f in model_fields]
    # Tracked fields left out of ``fields`` show their stored values while the write's
    # signals run (alerts follow the stored row), then the instance's own again.
    kept = [name for name in TRACKED_FIELDS if name not in names]
    for obj in present:
        held, row = obj.__dict__, current[obj.pk].__dict__
        for name in kept:
            if name in held and held[name] is not row[name]:
                expressions.append((obj, name, held[name]))
                held[name] = row[name]
    try:
        for obj in present:
            normalize(obj)
        write_products(present, names, using=using)
    finally:
        for obj, name, value in reversed(expressions):
            setattr(obj, name, value)
    return present


def _compute_expressions(
    objs: Sequence[Product], fields: Sequence[models.Field], *, using: str
) -> list[tuple[Product, str, Any]]:
    """Replace expression values of ``fields`` on ``objs`` by what the database computes
    for the (locked) row; return (obj, attname, expression) to put back afterwards."""
    replaced = []
    rows = Product._base_manager.db_manager(using)
    for obj in objs:
        new = {
            f"_new_{f.attname}": models.ExpressionWrapper(value, output_field=f)
            for f in fields
            if hasattr(value := getattr(obj, f.attname), "resolve_expression")
        }
        if not new:
            continue
        computed = rows.filter(pk=obj.pk).annotate(**new).values(*new).get()
        for f in fields:
            key = f"_new_{f.attname}"
            if key in computed:
                replaced.append((obj, f.attname, getattr(obj, f.attname)))
                setattr(obj, f.attname, _quantize(f, computed[key], decimal_rounding(using)))
    return replaced


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
    """Django's own ``bulk_create`` statement (so rows, conflicts and errors are exactly
    plain Django's), between a locked read of the rows it may conflict with and a read of
    what it wrote; the signals and history follow what really happened: ``created=True``
    for each inserted row, ``created=False`` (old values from the locked read) for each
    upserted one, nothing for ignored ones."""
    objs = list(objs)
    using = qs.db
    base_create = models.QuerySet.bulk_create
    if not objs:
        return base_create(
            qs,
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=update_conflicts,
            update_fields=update_fields,
            unique_fields=unique_fields,
        )
    if update_conflicts and list(unique_fields or ["sku"]) != ["sku"]:
        # The rows an upsert touched are found again by SKU; keyed by anything else, an
        # upserted row would be missed and its change untracked. (README: Deviations.)
        raise ValueError("Product upserts are keyed by 'sku' (unique_fields=['sku']).")
    names = [Product._meta.get_field(name).attname for name in update_fields or []]
    upsert_fields = frozenset([*names, "updated_at"]) if update_conflicts else None
    with transaction.atomic(using=using):
        existing: dict[Any, Product] = {}
        if ignore_conflicts or update_conflicts:
            existing = _rows_by_sku([obj.sku for obj in objs], using=using, lock=True)
        fresh = [obj for obj in objs if obj.sku not in existing]
        matched = [obj for obj in objs if obj.sku in existing] if update_conflicts else []
        _send(pre_save, fresh, using=using, update_fields=None)
        _send(pre_save, matched, using=using, update_fields=upsert_fields)
        base_create(
            qs,
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=update_conflicts,
            # An upsert is a save: it refreshes updated_at, as save() and update() do here.
            update_fields=[*update_fields, "updated_at"] if update_conflicts else update_fields,
            unique_fields=unique_fields,
        )
        if ignore_conflicts or update_conflicts:
            stored = _rows_by_sku([obj.sku for obj in objs], using=using, lock=False)
        else:  # every object was inserted (or the statement failed)
            stored = None
        created: list[Product] = []
        upserted: list[Product] = []
        done: set[str] = set()
        for obj in objs:
            if stored is None:
                created.append(obj)
                continue
            row = stored.get(obj.sku)
            if row is None or obj.sku in done:
                continue  # ignored (a conflict, or on SQLite any constraint)
            before = existing.get(obj.sku)
            if before is None or before.pk != row.pk:
                if row.created_at != obj.created_at:
                    continue  # another object of the batch inserted this SKU
                obj.pk = row.pk
                created.append(obj)
            elif update_conflicts:
                for f in Product._meta.concrete_fields:
                    setattr(obj, f.attname, getattr(row, f.attname))
                obj._before_write = {name: before._loaded[name] for name in TRACKED_FIELDS}
                obj._loaded = dict(before._loaded)
                upserted.append(obj)
            else:
                continue
            done.add(obj.sku)
        for obj in objs:
            obj._state.adding = False
            obj._state.db = using
        with collecting_changes(using):
            _send(post_save, created, using=using, created=True, update_fields=None)
            _send(post_save, upserted, using=using, created=False, update_fields=upsert_fields)
    remember_written(created, using=using)
    remember_written(upserted, using=using)
    return objs


def _rows_by_sku(skus: Sequence[str], *, using: str, lock: bool) -> dict[str, Product]:
    rows = Product._base_manager.db_manager(using)
    if lock:
        rows = rows.select_for_update()
    skus = list(dict.fromkeys(skus))
    found: dict[str, Product] = {}
    for start in range(0, len(skus), CHUNK):
        for row in rows.filter(sku__in=skus[start : start + CHUNK]).order_by("pk"):
            found[row.sku] = row
    return found
