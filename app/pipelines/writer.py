"""The unit of work the steps share: set-based reads and writes through the change pipeline.

A step hands over products with new values assigned; the writer skips unchanged ones,
groups the rest by which fields changed (so ``update_fields`` is what ``save()`` would have
sent) and writes each group with ``writes.write_products`` inside one change batch
(``collecting_changes``). ``pre_save``/``post_save`` receivers and the effects (history,
ledger, webhook events, alerts, cache) therefore see exactly what one ``save()`` per
changed product would produce. Each chunk holds a product at most once, so running the
effects per chunk keeps alert episodes exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, connections, transaction
from django.db.models.base import ModelState
from django.db.models.signals import post_init, pre_init

from ..core import sqlrows
from ..models import Product, StockAlert, deletes, writes
from ..tracking.adapters import saves_are_bulk
from ..tracking.batch import running_at_end
from .base import Select, StepFailure

CHUNK = sqlrows.CHUNK
WRITABLE = ("name", "price", "stock", "low_stock_threshold")
MAX_LISTED = 1000  # price changes / alerts listed in a result; the counts are always complete
MAX_REPORTED = 20  # located errors reported for one failing chunk
MAX_REJECTED = 10_000  # rejected rows kept in a run's result; ``rejected_count`` is complete


def jsonable(value: Any) -> Any:
    return value if value is None or isinstance(value, (int, str, bool)) else str(value)


@dataclass
class StepCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0


@dataclass
class RunState:
    """What a run has done so far: counts, price changes, alerts, dry-run diff, progress."""

    using: str
    dry_run: bool
    progress: Any = None  # service.Progress
    steps: list[dict[str, Any]] = field(default_factory=list)
    price_changes: list[dict[str, Any]] = field(default_factory=list)
    price_change_count: int = 0
    alerts_opened: list[dict[str, Any]] = field(default_factory=list)
    alerts_resolved: list[dict[str, Any]] = field(default_factory=list)
    alerts_opened_count: int = 0
    alerts_resolved_count: int = 0
    diff: dict[str, dict[str, Any]] = field(default_factory=dict)
    policy: str = "all_or_nothing"
    rejected: list[dict[str, Any]] = field(default_factory=list)
    rejected_count: int = 0
    # Set for previews and for runs that must match one: digests what the run read.
    hasher: Any = None
    fingerprint: str | None = None

    def note_diff(self, sku: str, field_: str, before: Any, after: Any) -> None:
        entry = self.diff.setdefault(sku, {"sku": sku, "action": "updated", "fields": {}})
        if field_ in entry["fields"]:
            entry["fields"][field_][1] = jsonable(after)
        else:
            entry["fields"][field_] = [jsonable(before), jsonable(after)]

    def diff_list(self) -> list[dict[str, Any]]:
        out = []
        for entry in self.diff.values():
            changes = [
                {"field": name, "before": before, "after": after}
                for name, (before, after) in entry["fields"].items()
                if before != after or entry["action"] != "updated"
            ]
            if changes or entry["action"] != "updated":
                out.append({"sku": entry["sku"], "action": entry["action"], "changes": changes})
        return out


class StepUnit:
    """One step's access to the database: locked reads, tracked writes, counts, errors."""

    def __init__(self, index: int, op: str, state: RunState) -> None:
        self.index = index
        self.op = op
        self.state = state
        self.using = state.using
        self.counts = StepCounts()

    # --- errors -------------------------------------------------------------------------

    def loc(self, *parts: Any) -> list[Any]:
        return ["steps", self.index, *parts]

    def failure(self, items: Sequence[tuple[Sequence[Any], str]]) -> StepFailure:
        return StepFailure(
            [
                {"loc": self.loc(*loc), "msg": f"step {self.index} ({self.op}): {msg}"}
                for loc, msg in list(items)[:MAX_REPORTED]
            ]
        )

    def reject(self, rejection: Any) -> None:
        """Keep a skipped input row (``skip_invalid_rows``) with its reason for the run record."""
        state = self.state
        state.rejected_count += 1
        if len(state.rejected) < MAX_REJECTED:
            state.rejected.append(rejection.as_dict(self.index))

    def note_fingerprint(self, text: str) -> None:
        """Make ``text`` (a profile's settings, say) part of the run's fingerprint."""
        if self.state.hasher is not None:
            self.state.hasher.update(f"{self.index}\x1d{text}\x1e".encode())

    # --- reads --------------------------------------------------------------------------

    def lock_skus(self, skus: Sequence[str], loc_of=None) -> dict[str, Product]:
        """Lock the products with these SKUs; fail the step if any does not exist.

        ``loc_of(sku)`` gives an unknown SKU's location inside the step.
        """
        found = {p.sku: p for p in self._locked(sku__in=list(skus))}
        missing = [s for s in dict.fromkeys(skus) if s not in found]
        if missing:
            loc_of = loc_of or (lambda s: (s,))
            raise self.failure([(loc_of(s), f"unknown SKU {s!r}") for s in missing])
        return found

    def lock_existing(self, skus: Sequence[str]) -> dict[str, Product]:
        return {p.sku: p for p in self._locked(sku__in=list(skus))}

    def iter_selected(self, select: Select) -> Iterator[list[Product]]:
        """Chunks of locked products matching ``select`` (unknown explicit SKUs fail)."""
        if select.skus is not None:
            skus = list(dict.fromkeys(select.skus))
            position = {s: i for i, s in enumerate(select.skus)}
            for start in range(0, len(skus), CHUNK):
                chunk = skus[start : start + CHUNK]
                found = self.lock_skus(chunk, lambda s: ("select", "skus", position[s]))
                yield [found[s] for s in chunk]
            return
        lookup = {} if select.all else {"sku__startswith": select.sku_prefix}
        last = None
        while True:
            page = {"pk__gt": last} if last is not None else {}
            chunk = self._locked(limit=CHUNK, **lookup, **page)
            if not chunk:
                return
            yield chunk
            last = chunk[-1].pk

    def _locked(self, limit: int | None = None, **lookup: Any) -> list[Product]:
        """Lock and read matching products (in primary-key order, so writers never deadlock).

        For a preview (or a run that must match one) what was asked and what was found go
        into the fingerprint: the same spec on the same products gives the same digest."""
        products = self._read_locked(limit, **lookup)
        hasher = self.state.hasher
        if hasher is not None:
            hasher.update(repr((self.index, limit, sorted(lookup.items()))).encode())
            for p in products:
                hasher.update(
                    f"{p.pk}\x1f{p.sku}\x1f{p.name}\x1f{p.price}\x1f{p.stock}"
                    f"\x1f{p.low_stock_threshold}\x1e".encode()
                )
        return products

    def _read_locked(self, limit: int | None = None, **lookup: Any) -> list[Product]:
        if pre_init.has_listeners(Product) or post_init.has_listeners(Product):
            # someone watches instance creation: build them the usual way
            qs = (
                Product._base_manager.db_manager(self.using)
                .select_for_update()
                .filter(**lookup)
                .order_by("pk")
            )
            return list(qs[:limit] if limit else qs)
        # Only the project's own receivers will see these instances: the timestamps they
        # never read stay deferred. A user's receiver gets complete instances, as save() would.
        attnames = NARROW_ATTNAMES if saves_are_bulk() else ATTNAMES
        using = self.using
        return [
            from_row(using, attnames, row) for row in _locked_rows(using, attnames, limit, lookup)
        ]

    # --- writes -------------------------------------------------------------------------

    def save(self, objs: Iterable[Product]) -> None:
        """Write the products whose values differ from what was read; count the rest."""
        groups: dict[tuple[str, ...], list[Product]] = {}
        unchanged = 0
        for obj in objs:
            loaded, values = obj._loaded, obj.__dict__
            changed = tuple([name for name in WRITABLE if loaded[name] != values[name]])
            if changed:
                group = groups.get(changed)
                if group is None:
                    groups[changed] = [obj]
                else:
                    group.append(obj)
            else:
                unchanged += 1
        self.counts.unchanged += unchanged
        if not groups:
            return
        state = self.state
        for fields, group in groups.items():
            self.counts.updated += len(group)
            if "price" in fields:
                state.price_change_count += len(group)
                room = MAX_LISTED - len(state.price_changes)
                state.price_changes.extend(
                    {
                        "step": self.index,
                        "sku": obj.sku,
                        "old": str(obj._loaded["price"]),
                        "new": str(obj.price),
                    }
                    for obj in group[: max(room, 0)]
                )
            if state.dry_run:
                for obj in group:
                    for name in fields:
                        state.note_diff(obj.sku, name, obj._loaded[name], getattr(obj, name))
        self.tracked(
            lambda: [
                writes.write_products(group, fields, using=self.using)
                for fields, group in groups.items()
            ]
        )

    def create(self, objs: list[Product], *, key: str | None = None) -> None:
        """Insert the new products ``objs``. ``key``: the step's source field; a SKU of
        ``objs`` another transaction created (and committed) since the step looked for
        it then fails the step naming it (PostgreSQL: on SQLite the run's transaction
        holds the write lock from the start)."""
        if not objs:
            return
        self.counts.created += len(objs)
        if self.state.dry_run:
            for obj in objs:
                self.state.diff[obj.sku] = {
                    "sku": obj.sku,
                    "action": "created",
                    "fields": {n: [None, jsonable(getattr(obj, n))] for n in WRITABLE},
                }
        manager = Product.objects.db_manager(self.using)
        if key is None or connections[self.using].vendor != "postgresql":
            self.tracked(lambda: manager.bulk_create(objs))
            return

        def write() -> None:
            try:
                with transaction.atomic(using=self.using):
                    manager.bulk_create(objs)
            except IntegrityError:
                skus = [obj.sku for obj in objs]
                taken = set(manager.filter(sku__in=skus).values_list("sku", flat=True))
                if not taken:
                    raise
                raise self.failure(
                    [((key, sku), created_meanwhile(sku)) for sku in skus if sku in taken]
                ) from None

        self.tracked(write)

    def delete(self, products: list[Product], *, set_based: bool = False) -> None:
        """Delete the (locked) ``products`` with Django's ``delete()``, which sends the
        delete signals per object, or, ``set_based`` (only the project's adapters listen:
        ``staged.applies``), with ``deletes.delete_rows``: the same effects."""
        if not products:
            return
        ids = [p.pk for p in products]
        closing = list(
            StockAlert.objects.using(self.using)
            .filter(
                product_id__in=sqlrows.json_list(ids, using=self.using, sql_type="bigint"),
                resolved_at__isnull=True,
            )
            .values_list("sku", flat=True)
        )
        if set_based:
            self.counts.deleted += deletes.delete_rows(products, using=self.using)
        else:
            _, per_model = Product.objects.db_manager(self.using).filter(pk__in=ids).delete()
            self.counts.deleted += per_model.get(Product._meta.label, 0)
        self._note_resolved(closing)
        if self.state.dry_run:
            for p in products:
                self.state.diff[p.sku] = {
                    "sku": p.sku,
                    "action": "deleted",
                    "fields": {n: [jsonable(p._loaded[n]), None] for n in WRITABLE},
                }

    def tracked(self, write: Callable[[], Any]) -> None:
        """Run ``write`` in one change batch, then note which alerts it opened or resolved
        (what the alerts effect reports on each change set: no query)."""
        with running_at_end(self.using) as done:
            write()
        state = self.state
        for changes in done:
            resolved = []
            for note in changes.notes("alerts"):
                if note[0] == "resolved":
                    resolved.append(note[1])
                    continue
                _, sku, stock, threshold = note
                state.alerts_opened_count += 1
                if len(state.alerts_opened) < MAX_LISTED:
                    state.alerts_opened.append(
                        {"step": self.index, "sku": sku, "stock": stock, "threshold": threshold}
                    )
            self._note_resolved(resolved)

    def _note_resolved(self, skus: Iterable[str]) -> None:
        state = self.state
        for sku in skus:
            state.alerts_resolved_count += 1
            if len(state.alerts_resolved) < MAX_LISTED:
                state.alerts_resolved.append({"step": self.index, "sku": sku})

    def advance(self, items: int) -> None:
        """Report progress: ``items`` more items of this step are done."""
        if self.state.progress is not None:
            self.state.progress.advance(items)


class ReaderUnit:
    """What a step's input reader running in a thread of its own (``feeds.read_ahead``)
    may call on its ``StepUnit``: reads and errors as the unit gives them; the calls that
    change the run's state (a rejected row, progress, the fingerprint) are kept, and
    ``replay``ed in order by the thread that writes (the progress writer's connection, the
    run's state and its hasher are that thread's)."""

    def __init__(self, unit: StepUnit) -> None:
        self.unit = unit
        self.state = unit.state
        self._calls: list[tuple[Callable[[StepUnit, Any], None], Any]] = []

    def failure(self, items: Sequence[tuple[Sequence[Any], str]]) -> StepFailure:
        return self.unit.failure(items)

    def reject(self, rejection: Any) -> None:
        self._calls.append((StepUnit.reject, rejection))

    def advance(self, items: int) -> None:
        self._calls.append((StepUnit.advance, items))

    def note_fingerprint(self, text: str) -> None:
        self._calls.append((StepUnit.note_fingerprint, text))

    def take(self) -> list[tuple[Callable[[StepUnit, Any], None], Any]]:
        """The calls kept since the last ``take`` (in the reader's thread)."""
        calls, self._calls = self._calls, []
        return calls

    def replay(self, calls: list[tuple[Callable[[StepUnit, Any], None], Any]]) -> None:
        """Make ``calls`` (from ``take``) on the unit (in the writer's thread)."""
        for call, argument in calls:
            call(self.unit, argument)


ATTNAMES = tuple(f.attname for f in Product._meta.concrete_fields)
# What the project's receivers and the steps read; created_at/updated_at stay deferred.
NARROW_ATTNAMES = tuple(name for name in ATTNAMES if name not in ("created_at", "updated_at"))


def created_meanwhile(sku: str) -> str:
    """The error of a new SKU another transaction created while an upsert step ran."""
    return (
        f"SKU {sku} was created by another transaction while this step ran; "
        "nothing was written: run the pipeline again"
    )


def _locked_rows(
    using: str, attnames: Sequence[str], limit: int | None, lookup: dict[str, Any]
) -> list[tuple]:
    """Rows of ``attnames`` matching ``lookup``, locked, in primary-key order.

    A long SKU list travels as one JSON parameter (``sqlrows.json_rows``), without the
    ORM's per-element lookup preparation; other lookups go through the ORM. Values get the
    ORM's converters.
    """
    skus = lookup.get("sku__in")
    if skus is None or len(lookup) != 1:
        qs = (
            Product._base_manager.db_manager(using)
            .select_for_update()
            .filter(**lookup)
            .order_by("pk")
        )
        return list((qs[:limit] if limit else qs).values_list(*attnames))
    if not skus:
        return []
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = Product._meta
    table = qn(meta.db_table)
    columns = ", ".join(f"{table}.{qn(meta.get_field(name).column)}" for name in attnames)
    sku_column = f"{table}.{qn(meta.get_field('sku').column)}"
    where = f"{sku_column} {sqlrows.json_in(connection)}"
    params = [sqlrows.json_rows(list(skus))]
    sql = f"SELECT {columns} FROM {table} WHERE {where} ORDER BY {table}.{qn(meta.pk.column)}"
    if limit:
        sql += f" LIMIT {int(limit)}"
    if connection.features.has_select_for_update:
        sql += " " + connection.ops.for_update_sql()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return converted(connection, attnames, cursor.fetchall())


# Raw values converted once per distinct value: equal ones convert alike (a datetime with
# its offset; floats do not: 0.0 and -0.0 are equal, 1 and 1.0 too).
_MEMOIZED = (str, datetime)


def converted(connection, attnames: Sequence[str], rows: list[tuple]) -> list[tuple]:
    """Rows of ``Product`` columns ``attnames`` read with raw SQL, with the ORM's values.
    A datetime (or its text) is converted once per distinct value: the rows of a bulk
    write share their timestamps."""
    converters = [
        (i, found)
        for i, name in enumerate(attnames)
        if (found := column_converter(connection, name))
    ]
    if not converters:
        return rows
    memos: list[dict[str, Any]] = [{} for _ in converters]
    out = []
    for row in rows:
        row = list(row)
        for (i, convert), memo in zip(converters, memos, strict=True):
            value = row[i]
            if type(value) in _MEMOIZED:
                key = (value, value.utcoffset()) if type(value) is datetime else value
                found = memo.get(key, memo)
                if found is memo:
                    found = memo[key] = convert(value)
                row[i] = found
            else:
                row[i] = convert(value)
        out.append(tuple(row))
    return out


def column_converter(connection, attname: str) -> Callable[[Any], Any] | None:
    """What the ORM does to a ``Product`` column's value read on ``connection`` (``None``:
    nothing), for rows read with raw SQL."""
    return sqlrows.column_converter(connection, Product, attname)


def from_row(using: str, attnames: Sequence[str], row: tuple) -> Product:
    """``Product.from_db`` without ``Model.__init__`` (only used when no init receivers exist);
    columns not in ``attnames`` are deferred, as with ``.only()``."""
    obj = Product.__new__(Product)
    state = ModelState()
    state.adding, state.db = False, using
    values = dict(zip(attnames, row, strict=True))
    attributes = obj.__dict__
    attributes.update(values)  # a copy: ``values`` stays the untouched ``_loaded``
    attributes["_state"], attributes["_loaded"] = state, values
    return obj


def chunked(items: Iterable[Any], size: int = CHUNK) -> Iterator[list[Any]]:
    chunk: list[Any] = []
    for item in items:
        chunk.append(item)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def vendor(using: str) -> str:
    return connections[using].vendor
