"""Differential test: ``Product`` behaves like a plain Django model, and every write is tracked.

Hypothesis generates sequences of ordinary ORM operations (saves after ``get()``,
``only()``/``defer()``, ``refresh_from_db()``, ``select_for_update()``, on stale instances,
with ``update_fields`` and ``F()`` values; ``QuerySet.update()`` on filtered, ordered,
annotated, ``values()`` and proxy querysets with ``F()`` and ``Case``/``When``;
``bulk_update``; ``bulk_create`` plain, ``ignore_conflicts`` and ``update_conflicts``;
``get_or_create``; ``update_or_create``; deletes; the async ORM; proxy models; atomic
blocks that roll back; instances whose row another writer deleted). Each operation is applied to ``Product`` and then to
``PlainProduct`` (same fields and constraints, no overrides, no receivers:
``tests/conformance/plainapp``). After EVERY operation the test asserts:

* the same exception type on both sides (or none), and the same result (row counts,
  ``created`` flags);
* the same rows (sku, name, price, stock, low_stock_threshold) in both tables;
* the ``PriceHistory`` rows written by the operation are exactly its committed price
  changes (old -> new), nothing for unchanged prices, creations or rolled-back work;
* each product's stock equals the sum of its ``StockMovement`` ledger;
* a product has an open ``StockAlert`` exactly when stock < low_stock_threshold, and no
  deleted product keeps an open alert.

Where ``Product`` deviates from plain Django on purpose (README, "Deviations from plain
Django"), the test applies the documented behaviour to the plain side's expectation.

Examples: ``EXAMPLES`` = 1000 on SQLite, a quarter on PostgreSQL (``hypothesis_examples``
in tests/conftest.py; ``TEST_HYPOTHESIS_SHARE=1`` runs all 1000 there too), derandomized, so
every run tries the same sequences, each a sequence of up to ``MAX_OPS`` = 20 operations on a
fresh database. Runtime on this machine (2 cores shared with other work): about 50 s on
SQLite and 85 s on PostgreSQL for 1000. It fails on
the code before the fixes, and with each fix checked one at a time reverted (refresh
snapshot, rollback retry, bulk_create, proxies, bulk_update reads, left-out fields, audit,
normalize); each defect also has a plain test in ``test_regressions.py``.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.core.exceptions import MultipleObjectsReturned, ObjectDoesNotExist
from django.db import connection, models, transaction
from django.db.models import Case, F, Max, Value, When
from hypothesis import given, note
from hypothesis import strategies as st

from app.models import (
    DeletionAudit,
    PriceHistory,
    Product,
    Reservation,
    StockAlert,
    StockLevel,
    StockMovement,
)
from tests.conformance.plainapp.models import PlainProduct, PlainProductProxy, ProductProxy
from tests.conftest import differential_settings

EXAMPLES = 1000
MAX_OPS = 20
SLOTS = 3
SKUS = ["A-1", "B-2", "C-3"]  # letters, digits and '-' only: valid under any SKU rule
FIELDS = ("sku", "name", "price", "stock", "low_stock_threshold")
WRITABLE = ("name", "price", "stock", "low_stock_threshold")


class Rollback(Exception):
    """Raised inside an atomic block to roll it back."""


# --- strategies --------------------------------------------------------------------------

skus = st.sampled_from(SKUS)
slots = st.integers(0, SLOTS - 1)
names = st.sampled_from(["Alpha", "Beta", "Gamma"])
price_values = st.sampled_from(["0.00", "1.50", "2.00", "9.99", "10.00", "10.005", "-1.00"]).map(
    Decimal
) | st.sampled_from(["3.5", "10.00"])  # strings, as forms and shells assign
stock_values = st.integers(-1, 12)
threshold_values = st.integers(0, 8)

tokens = {
    "name": names.map(lambda v: ("v", v)),
    "price": price_values.map(lambda v: ("v", v))
    | st.sampled_from([("F*", 2), ("F+", 1), ("case",)]),
    "stock": stock_values.map(lambda v: ("v", v))
    | st.integers(-4, 3).map(lambda n: ("F+", n))
    | st.just(("case",)),
    "low_stock_threshold": threshold_values.map(lambda v: ("v", v)),
}
plain_tokens = {
    "name": tokens["name"],
    "price": price_values.map(lambda v: ("v", v)),
    "stock": stock_values.map(lambda v: ("v", v)),
    "low_stock_threshold": tokens["low_stock_threshold"],
}


def assignments_of(token_strategies) -> st.SearchStrategy[tuple]:
    return st.lists(st.sampled_from(WRITABLE), min_size=1, max_size=3, unique=True).flatmap(
        lambda fields: st.tuples(*(st.tuples(st.just(f), token_strategies[f]) for f in fields))
    )


assignments = assignments_of(tokens)
plain_assignments = assignments_of(plain_tokens)


@st.composite
def new_rows(draw, *, unique: bool = True) -> tuple:
    chosen = draw(st.lists(skus, min_size=1, max_size=3, unique=unique))
    return tuple(
        (
            sku,
            draw(names),
            draw(price_values),
            draw(stock_values),
            draw(st.none() | threshold_values),
        )
        for sku in chosen
    )


load_modes = st.sampled_from(["get", "only", "defer", "proxy", "first", "filter_first"])
update_fields_modes = st.sampled_from([None, "assigned", "price", "stock"])
filters = st.sampled_from(
    ["sku", "low", "all", "ordered", "annotated", "values", "aggregate", "distinct", "proxy"]
)
write_fields = st.lists(st.sampled_from(WRITABLE), min_size=1, max_size=3, unique=True).map(tuple)

simple_ops = st.one_of(
    st.tuples(st.just("create"), new_rows().map(lambda rows: rows[0]), st.booleans()),
    st.tuples(st.just("load"), slots, skus, load_modes),
    st.tuples(st.just("assign_save"), slots, assignments, update_fields_modes),
    st.tuples(st.just("refresh"), slots, st.sampled_from([None, ("stock",), ("price",)])),
    st.tuples(st.just("get_save"), skus, load_modes, assignments, update_fields_modes),
    st.tuples(st.just("sfu_save"), skus, assignments),
    st.tuples(st.just("update"), filters, skus, assignments),
    st.tuples(
        st.just("bulk_update"),
        st.lists(st.tuples(slots, plain_assignments | assignments), min_size=1, max_size=3),
        write_fields,
    ),
    st.tuples(st.just("bulk_create"), st.just("plain"), new_rows(unique=False), st.none()),
    st.tuples(st.just("bulk_create"), st.just("ignore"), new_rows(unique=False), st.none()),
    st.tuples(st.just("bulk_create"), st.just("update"), new_rows(), write_fields),
    st.tuples(st.just("get_or_create"), skus, new_rows().map(lambda rows: rows[0])),
    st.tuples(st.just("update_or_create"), skus, assignments),
    st.tuples(st.just("delete"), slots),
    st.tuples(st.just("delete_qs"), filters, skus),
    st.tuples(st.just("asave"), slots, assignments, update_fields_modes),
    st.tuples(st.just("aupdate"), filters, skus, assignments),
    st.tuples(st.just("abulk_create"), new_rows(unique=False), st.booleans()),
    st.tuples(st.just("aupdate_or_create"), skus, assignments),
    st.tuples(st.just("aget_or_create"), skus, new_rows().map(lambda rows: rows[0])),
    st.tuples(st.just("adelete"), slots),
    st.tuples(st.just("force_update_save"), slots, assignments),
    st.tuples(st.just("update_or_create_split"), skus, assignments, assignments),
    st.tuples(
        st.just("concurrent"),
        slots,
        skus,
        load_modes,
        plain_assignments,
        st.sampled_from(["none", "all", "price", "stock"]),
        st.lists(st.sampled_from(WRITABLE), min_size=1, max_size=2, unique=True).map(tuple),
    ),
    st.tuples(st.just("retry"), slots, skus, load_modes, assignments, plain_assignments),
    st.tuples(
        st.just("partial_write"),
        skus,
        tokens["stock"],
        tokens["low_stock_threshold"],
        st.sampled_from(["save", "bulk_update"]),
    ),
    st.tuples(
        st.just("row_gone"),
        slots,
        skus,
        load_modes,
        st.sampled_from(["save", "save_fields", "bulk_update", "delete"]),
        assignments,
    ),
)
operations = simple_ops | st.tuples(st.just("rollback"), simple_ops)


# --- applying an operation to one side ---------------------------------------------------


class Side:
    """One model family (the tracked ``Product`` or the plain twin) and its live instances."""

    def __init__(self, model: type[models.Model], proxy: type[models.Model]) -> None:
        self.model = model
        self.proxy = proxy
        self.slots: dict[int, models.Model] = {}
        self.plain = not issubclass(model, Product)
        self.in_rollback = False

    def manager(self, proxy: bool = False) -> models.Manager:
        return (self.proxy if proxy else self.model)._default_manager


# --- the documented deviation, applied to the plain side ----------------------------------
# Product.save() without update_fields writes only the fields whose value differs from the
# one the instance last read from or wrote to the database (README, "Deviations from plain
# Django"). The plain side keeps that snapshot itself (``_snap``) and passes the same
# update_fields; everything else it does is plain Django.

CONCRETE = [f.attname for f in PlainProduct._meta.concrete_fields if not f.primary_key]


def remember(obj: models.Model, attnames, *, rolled_back: bool) -> None:
    snap = obj.__dict__.setdefault("_snap", {})
    for name in attnames:
        value = obj.__dict__.get(name, snap)
        if value is snap:
            continue
        if rolled_back or hasattr(value, "resolve_expression"):
            snap.pop(name, None)  # unknown: written next time
        else:
            snap[name] = value


def loaded(side: Side, obj: models.Model | None) -> models.Model | None:
    if side.plain and obj is not None:
        obj._snap = {}
        remember(obj, CONCRETE, rolled_back=False)
    return obj


def save(side: Side, obj: models.Model, update_fields: list[str] | None, *, run=None) -> None:
    """``obj.save(update_fields=...)`` (or ``run``, e.g. asave), narrowed on the plain side
    the way Product.save() narrows."""
    run = run or obj.save
    if not side.plain:
        run(update_fields=update_fields)
        return
    narrowed = None
    if update_fields is None and not obj._state.adding and obj.pk is not None:
        snap = obj.__dict__.get("_snap")
        if snap is not None:
            values = obj.__dict__
            narrowed = [
                name
                for name in CONCRETE
                if name in values and (name not in snap or snap[name] != values[name])
            ]
            narrowed = list(dict.fromkeys([*narrowed, "updated_at"]))
    if narrowed and not side.model._base_manager.filter(pk=obj.pk).exists():
        narrowed = None  # the row is gone: saved in full (inserted again), as Django does
    run(update_fields=narrowed or update_fields)
    written = narrowed or update_fields or CONCRETE
    remember(obj, written, rolled_back=side.in_rollback)


def priced(value: Any) -> Any:
    """Documented deviation: on SQLite (no fixed-point type) plain Django stores a price
    with extra places unrounded, where F() arithmetic can see them; Product rounds to the
    column's two places first. Both sides get the rounded price there."""
    if isinstance(value, Decimal) and connection.vendor == "sqlite":
        return value.quantize(Decimal("0.01"), rounding=ROUND_HALF_EVEN)
    return value


def value_of(field: str, token: tuple) -> Any:
    kind = token[0]
    if kind == "v":
        return priced(token[1])
    if kind == "F+":
        return F(field) + token[1]
    if kind == "F*":
        return F(field) * token[1]
    then = Value(Decimal("9.99")) if field == "price" else Value(10)
    return Case(When(stock__lt=5, then=then), default=F(field))


def assign(obj: models.Model, pairs: tuple) -> None:
    for field, token in pairs:
        setattr(obj, field, value_of(field, token))


def update_fields_of(mode: str | None, pairs: tuple) -> list[str] | None:
    if mode is None:
        return None
    if mode == "assigned":
        return [field for field, _ in pairs]
    return [mode]


def load(side: Side, sku: str, mode: str) -> models.Model | None:
    qs = side.manager(proxy=mode == "proxy").all()
    if mode == "only":
        qs = qs.only("sku", "price")
    elif mode == "defer":
        qs = qs.defer("price", "stock")
    if mode == "first":
        return qs.filter(sku=sku).first()
    if mode == "filter_first":
        return qs.filter(sku__in=[sku]).order_by("-stock").first()
    return qs.get(sku=sku)


def filtered(side: Side, kind: str, sku: str) -> models.QuerySet:
    if kind == "aggregate" and side.plain:
        # Documented deviation: Product's update()/delete() read the rows first (signals,
        # history), so a filter on an aggregate works; plain Django's single statement puts
        # the aggregate in WHERE and fails. The plain side applies it to the same rows.
        selected = filtered(side, "aggregate_select", sku)
        return side.manager().filter(pk__in=list(selected.values_list("pk", flat=True)))
    if kind == "aggregate_select":
        kind = "aggregate"
    qs = side.manager(proxy=kind == "proxy").all()
    if kind == "sku":
        return qs.filter(sku=sku)
    if kind == "low":
        return qs.filter(stock__lt=5)
    if kind == "ordered":
        return qs.filter(price__gte=1).order_by("-price", "sku")
    if kind == "annotated":
        return qs.annotate(twice=F("stock") * 2).filter(twice__gte=4)
    if kind == "values":
        return qs.exclude(sku=sku).values("sku")
    if kind == "aggregate":
        return qs.annotate(top=Max("stock")).filter(top__gte=2)
    if kind == "distinct":
        return qs.filter(stock__gte=1).distinct()
    if kind == "proxy":
        return qs.filter(stock__gte=1)
    return qs


def build(side: Side, row: tuple) -> models.Model:
    sku, name, price, stock, threshold = row
    extra = {} if threshold is None else {"low_stock_threshold": threshold}
    return side.model(sku=sku, name=name, price=priced(price), stock=stock, **extra)


def apply(side: Side, op: tuple) -> Any:
    """Run ``op`` on ``side``; return a summary comparable across sides."""
    kind = op[0]
    manager = side.manager()
    if kind == "create":
        _, row, through_proxy = op
        sku, name, price, stock, threshold = row
        extra = {} if threshold is None else {"low_stock_threshold": threshold}
        side.manager(proxy=through_proxy).create(
            sku=sku, name=name, price=priced(price), stock=stock, **extra
        )
        return None
    if kind == "load":
        _, slot, sku, mode = op
        side.slots[slot] = loaded(side, load(side, sku, mode))
        return side.slots[slot] is not None
    if kind == "assign_save":
        _, slot, pairs, mode = op
        obj = side.slots.get(slot)
        if obj is None:
            return "empty"
        assign(obj, pairs)
        save(side, obj, update_fields_of(mode, pairs))
        return None
    if kind == "refresh":
        _, slot, fields = op
        obj = side.slots.get(slot)
        if obj is None:
            return "empty"
        obj.refresh_from_db(fields=fields)
        if side.plain:
            remember(obj, fields or CONCRETE, rolled_back=False)
        return None
    if kind == "get_save":
        _, sku, mode, pairs, uf = op
        obj = loaded(side, load(side, sku, mode))
        if obj is None:
            return "missing"
        assign(obj, pairs)
        save(side, obj, update_fields_of(uf, pairs))
        return None
    if kind == "sfu_save":
        _, sku, pairs = op
        with transaction.atomic():
            obj = loaded(side, manager.select_for_update().get(sku=sku))
            assign(obj, pairs)
            save(side, obj, None)
        return None
    if kind == "update":
        _, filter_kind, sku, pairs = op
        values = {field: value_of(field, token) for field, token in pairs}
        return filtered(side, filter_kind, sku).update(**values)
    if kind == "bulk_update":
        _, items, fields = op
        objs = []
        for slot, pairs in items:
            obj = side.slots.get(slot)
            if obj is not None and obj.pk is not None:
                assign(obj, pairs)
                objs.append(obj)
        if not objs:
            return "empty"
        if not side.plain:
            return manager.bulk_update(objs, list(fields), batch_size=2)
        # Product's bulk_update reads the rows under lock: the instances learn the stored
        # values, then the written ones (the first instance of a row wins, as in Django).
        stored = {
            row["pk"]: row
            for row in manager.filter(pk__in=[o.pk for o in objs]).values("pk", *CONCRETE)
        }
        count = manager.bulk_update(objs, list(fields), batch_size=2)
        seen = set()
        for obj in objs:
            if obj.pk in stored and obj.pk not in seen:
                seen.add(obj.pk)
                snap = obj.__dict__.setdefault("_snap", {})
                snap.update({k: v for k, v in stored[obj.pk].items() if k != "pk"})
                remember(obj, fields, rolled_back=side.in_rollback)
        return count
    if kind == "bulk_create":
        _, mode, rows, update_fields = op
        objs = [build(side, row) for row in rows]
        if mode == "ignore":
            created = manager.bulk_create(objs, ignore_conflicts=True)
        elif mode == "update":
            created = manager.bulk_create(
                objs, update_conflicts=True, unique_fields=["sku"], update_fields=update_fields
            )
        else:
            created = manager.bulk_create(objs)
        return len(created)
    if kind == "get_or_create":
        _, sku, row = op
        _, name, price, stock, threshold = row
        defaults = {"name": name, "price": priced(price), "stock": stock}
        if threshold is not None:
            defaults["low_stock_threshold"] = threshold
        return manager.get_or_create(sku=sku, defaults=defaults)[1]
    if kind == "update_or_create":
        _, sku, pairs = op
        defaults = {field: value_of(field, token) for field, token in pairs}
        defaults.setdefault("name", "Created")
        defaults.setdefault("price", Decimal("1.00"))
        return manager.update_or_create(sku=sku, defaults=defaults)[1]
    if kind == "delete":
        _, slot = op
        obj = side.slots.get(slot)
        if obj is None or obj.pk is None:
            return "empty"
        return products_deleted(obj.delete())
    if kind == "delete_qs":
        _, filter_kind, sku = op
        qs = filtered(side, filter_kind, sku)
        if filter_kind == "values":  # delete() refuses values() querysets
            qs = side.manager().exclude(sku=sku)
        return products_deleted(qs.delete())
    if kind == "asave":
        _, slot, pairs, mode = op
        obj = side.slots.get(slot)
        if obj is None:
            return "empty"
        assign(obj, pairs)

        def asave(update_fields):
            run_async(obj.asave, update_fields=update_fields)

        save(side, obj, update_fields_of(mode, pairs), run=asave)
        return None
    if kind == "aupdate":
        _, filter_kind, sku, pairs = op
        values = {field: value_of(field, token) for field, token in pairs}
        return run_async(filtered(side, filter_kind, sku).aupdate, **values)
    if kind == "abulk_create":
        _, rows, ignore = op
        objs = [build(side, row) for row in rows]
        return len(run_async(manager.abulk_create, objs, ignore_conflicts=ignore))
    if kind == "aupdate_or_create":
        _, sku, pairs = op
        defaults = {field: value_of(field, token) for field, token in pairs}
        defaults.setdefault("name", "Created")
        defaults.setdefault("price", Decimal("1.00"))
        return run_async(manager.aupdate_or_create, sku=sku, defaults=defaults)[1]
    if kind == "aget_or_create":
        _, sku, row = op
        _, name, price, stock, threshold = row
        defaults = {"name": name, "price": priced(price), "stock": stock}
        return run_async(manager.aget_or_create, sku=sku, defaults=defaults)[1]
    if kind == "adelete":
        _, slot = op
        obj = side.slots.get(slot)
        if obj is None or obj.pk is None:
            return "empty"
        return products_deleted(run_async(obj.adelete))
    if kind == "force_update_save":
        _, slot, pairs = op
        obj = side.slots.get(slot)
        if obj is None:
            return "empty"
        assign(obj, pairs)

        def forced(update_fields):
            obj.save(force_update=True, update_fields=update_fields)

        save(side, obj, None, run=forced)
        return None
    if kind == "update_or_create_split":
        _, sku, pairs, create_pairs = op
        defaults = {field: value_of(field, token) for field, token in pairs}
        create_defaults = {field: value_of(field, token) for field, token in create_pairs}
        create_defaults.setdefault("name", "Created")
        create_defaults.setdefault("price", Decimal("1.00"))
        return manager.update_or_create(
            sku=sku, defaults=defaults, create_defaults=create_defaults
        )[1]
    if kind == "concurrent":  # load; another writer changes the row; refresh; set back; save
        _, slot, sku, mode, other, refresh, back, *_ = op
        obj = side.slots[slot] = loaded(side, load(side, sku, mode))
        original = {name: obj.__dict__[name] for name in back if name in obj.__dict__}
        manager.filter(sku=sku).update(**{f: value_of(f, token) for f, token in other})
        if refresh != "none":
            fields = None if refresh == "all" else [refresh]
            obj.refresh_from_db(fields=fields)
            if side.plain:
                remember(obj, fields or CONCRETE, rolled_back=False)
        for name, value in original.items():
            setattr(obj, name, value)
        save(side, obj, None)
        return None
    if kind == "retry":  # a save rolled back with its transaction, then saved again
        _, slot, sku, mode, pairs, more = op
        obj = side.slots[slot] = loaded(side, load(side, sku, mode))
        assign(obj, pairs)
        side.in_rollback = True
        try:
            with transaction.atomic():
                save(side, obj, None)
                raise Rollback
        except Rollback:
            pass
        finally:
            side.in_rollback = False
        assign(obj, more)
        save(side, obj, None)
        return None
    if kind == "partial_write":  # stock written, an assigned threshold left out
        _, sku, stock_token, threshold_token, how = op
        obj = loaded(side, manager.get(sku=sku))
        assign(obj, (("stock", stock_token), ("low_stock_threshold", threshold_token)))
        if how == "save":
            save(side, obj, ["stock"])
            return None
        return manager.bulk_update([obj], ["stock"])
    if kind == "row_gone":  # an instance (maybe narrow) whose row another writer deletes
        _, slot, sku, mode, then, pairs = op
        obj = side.slots[slot] = loaded(side, load(side, sku, mode))
        manager.filter(sku=sku).delete()
        assign(obj, pairs)
        if then == "save":
            save(side, obj, None)
        elif then == "save_fields":
            save(side, obj, [field for field, _ in pairs])
        elif then == "bulk_update":  # all fields: deferred ones are loaded (and gone)
            return manager.bulk_update([obj], list(WRITABLE))
        else:
            return products_deleted(obj.delete())
        return None
    if kind == "rollback":
        side.in_rollback = True
        try:
            with transaction.atomic():
                result = apply(side, op[1])
                raise Rollback
        except Rollback:
            return result
        finally:
            side.in_rollback = False
    raise AssertionError(f"unknown operation {kind}")


def outcome(side: Side, op: tuple) -> tuple[type[BaseException] | None, Any]:
    try:
        return None, apply(side, op)
    except Exception as exc:  # compared across sides: the type is the observable
        for general in (ObjectDoesNotExist, MultipleObjectsReturned):
            if isinstance(exc, general):  # each model has its own subclass
                return general, None
        return type(exc), None


def run_async(method, *args: Any, **kwargs: Any) -> Any:
    """Await an async ORM method from this synchronous test (same thread, same connection)."""

    async def call() -> Any:
        return await method(*args, **kwargs)

    return async_to_sync(call)()


# --- what is compared ----------------------------------------------------------------


def products_deleted(result: tuple[int, dict[str, int]]) -> int:
    """``delete()``'s count without the product's stock levels, which Django deletes (and
    counts) with it as it does any cascading relation; the plain model has none."""
    total, per_model = result
    return total - per_model.get(StockLevel._meta.label, 0)


def rows(model: type[models.Model]) -> list[tuple]:
    return list(model._base_manager.order_by("sku").values_list(*FIELDS))


def prices(model: type[models.Model]) -> dict[str, tuple]:
    """Each row's price by SKU, with its creation time: a row deleted and inserted again
    within one operation is a new row, not a price change."""
    rows = model._base_manager.values_list("sku", "created_at", "price")
    return {sku: (created_at, price) for sku, created_at, price in rows}


def reset() -> None:
    """A fresh database for each example (the sequences of ids carry on, which is harmless:
    products are compared by SKU)."""
    with connection.cursor() as cursor:
        for model in (
            PriceHistory,
            StockMovement,
            StockAlert,
            DeletionAudit,
            StockLevel,
            Reservation,
            Product,
        ):
            cursor.execute(f"DELETE FROM {connection.ops.quote_name(model._meta.db_table)}")
        cursor.execute(f"DELETE FROM {connection.ops.quote_name(PlainProduct._meta.db_table)}")


def check_tracking(op: tuple, before: dict[str, tuple], history_after_id: int) -> None:
    after = prices(PlainProduct)
    chains: dict[str, list[tuple[Decimal, Decimal]]] = defaultdict(list)
    for sku, old, new in (
        PriceHistory.objects.filter(id__gt=history_after_id)
        .order_by("id")
        .values_list("sku", "old_price", "new_price")
    ):
        chains[sku].append((old, new))
    for sku in before.keys() | after.keys() | chains.keys():
        chain, was, now = chains.get(sku, []), before.get(sku), after.get(sku)
        if was is None or now is None or was[0] != now[0]:  # created, deleted, re-inserted
            assert not chain, f"price history of {sku} after {op}: {chain} for no update"
            continue
        # One row per committed change, in order: old -> new, chained, none if unchanged
        # (an operation that writes twice, like another writer and then this one, may
        # change a price and change it back).
        steps = [was[1]] + [new for _, new in chain]
        assert [old for old, _ in chain] == steps[:-1], f"price history of {sku} after {op}"
        assert all(old != new for old, new in chain), f"price history of {sku} after {op}"
        assert steps[-1] == now[1], f"price history of {sku} after {op}: {chain}"
    ledger: dict[int, int] = defaultdict(int)
    at: dict[tuple[int, int], int] = defaultdict(int)
    for product_id, location_id, delta in StockMovement.objects.values_list(
        "product_id", "location_id", "delta"
    ):
        ledger[product_id] += delta
        at[product_id, location_id] += delta
    levels: dict[int, int] = defaultdict(int)
    for product_id, location_id, quantity in StockLevel.objects.values_list(
        "product_id", "location_id", "quantity"
    ):
        levels[product_id] += quantity
        # Every write path keeps the product's locations: the ledger per location too.
        assert at.pop((product_id, location_id), 0) == quantity, (product_id, location_id)
    assert not {key: n for key, n in at.items() if n and key[0] is not None}, at
    open_alerts: dict[int | None, int] = defaultdict(int)
    for (product_id,) in StockAlert.objects.filter(resolved_at__isnull=True).values_list(
        "product_id"
    ):
        open_alerts[product_id] += 1
    for pk, sku, stock, threshold in Product._base_manager.values_list(
        "pk", "sku", "stock", "low_stock_threshold"
    ):
        assert ledger[pk] == stock, f"ledger of {sku} sums to {ledger[pk]}, stock {stock}"
        assert levels[pk] == stock, f"locations of {sku} sum to {levels[pk]}, stock {stock}"
        assert open_alerts[pk] == int(stock < threshold), (
            f"{sku}: {open_alerts[pk]} open alerts with stock {stock}, threshold {threshold}"
        )
    assert open_alerts[None] == 0, "a deleted product kept an open alert"


@pytest.mark.django_db(transaction=True)
@differential_settings(EXAMPLES)
@given(ops=st.lists(operations, min_size=1, max_size=MAX_OPS))
def test_product_writes_behave_like_plain_django_and_are_tracked(ops):
    note(f"operations: {ops}")
    reset()
    tracked = Side(Product, ProductProxy)
    plain = Side(PlainProduct, PlainProductProxy)
    for op in ops:
        before = prices(PlainProduct)
        history_after_id = PriceHistory.objects.aggregate(m=Max("id"))["m"] or 0
        got = outcome(tracked, op)
        want = outcome(plain, op)
        assert got == want, f"{op}: Product gave {got}, plain Django {want}"
        assert rows(Product) == rows(PlainProduct), f"rows differ after {op}"
        check_tracking(op, before, history_after_id)
