"""Change sets: what one write did to products, in one shape for every write path.

A change is a row ``(pk, kind, before, after)``: ``kind`` is ``created``, ``updated`` or
``deleted``; ``before`` holds the committed values of the fields the write set (empty for
a creation); ``after`` the product's values after the write. Two sources produce them:

* ``RowChanges``: Python rows, built from the instances a write sent ``post_save`` or
  ``post_delete`` for (``save()``, the queryset's bulk writes, deletes, the pipelines'
  object route).
* ``StagedChanges``: the pipelines' SQL route, whose changed rows stay in the database; the
  change set carries a ``SELECT`` over the staged table instead of rows.

Effects read a change set through one interface, so each has one implementation:
``rows(where)`` gives ``Change`` rows (the SQL route reads them), ``select(...)`` gives
``INSERT ... SELECT`` sources (Python rows travel as one JSON parameter), ``has(where)``
says whether any row may match. ``where`` is one of the named filters below, each with its
Python and its SQL form side by side.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.db import connections, models
from django.utils import timezone

from ..core.context import current_change_context
from ..core.sqlrows import CHUNK, column_converter, json_rows, json_rows_sql
from ..models import Product

CREATED, UPDATED, DELETED = "created", "updated", "deleted"
FIELDS = ("sku", "name", "price", "stock", "low_stock_threshold")

_PRICE = Product._meta.get_field("price")
CENTS = Decimal(1).scaleb(-_PRICE.decimal_places)


def quantize_price(value: Any) -> Any:
    """A price as the database stores it (two places), so old and new compare exactly."""
    if type(value) is Decimal and value.is_finite():
        return value.quantize(CENTS)
    if value is None:
        return value
    value = _PRICE.to_python(value)
    return value.quantize(CENTS) if isinstance(value, Decimal) else value


class Change:
    """One product's change. ``after`` may lack a field a narrow read left deferred; ``get``
    then reads it from ``instance``, as the attribute access would."""

    __slots__ = ("after", "at", "before", "instance", "kind", "pk")

    def __init__(
        self,
        pk: Any,
        kind: str,
        before: dict[str, Any],
        after: dict[str, Any],
        at: Any = None,
        instance: Product | None = None,
    ) -> None:
        self.pk, self.kind, self.before, self.after = pk, kind, before, after
        self.at, self.instance = at, instance

    def __repr__(self) -> str:
        return f"Change({self.pk!r}, {self.kind}, before={self.before}, after={self.after})"

    def get(self, name: str) -> Any:
        after = self.after
        if name in after:
            return after[name]
        value = after[name] = getattr(self.instance, name)
        return value

    def old(self, name: str) -> Any:
        """The value before the write (a new product had no stock)."""
        if self.kind == CREATED and name == "stock":
            return 0
        before = self.before
        return before[name] if name in before else self.get(name)

    def changed(self, name: str) -> bool:
        return name in self.before and self.before[name] != self.get(name)

    sku = property(lambda self: self.get("sku"))
    name = property(lambda self: self.get("name"))
    price = property(lambda self: self.get("price"))
    stock = property(lambda self: self.get("stock"))
    low_stock_threshold = property(lambda self: self.get("low_stock_threshold"))

    @property
    def is_low_stock(self) -> bool:
        return self.get("stock") < self.get("low_stock_threshold")


def _crosses(c: Change) -> bool:
    if c.kind == CREATED:
        return True
    if c.kind != UPDATED:
        return False
    before = c.before
    if "stock" not in before and "low_stock_threshold" not in before:
        return False
    return (c.old("stock") < c.old("low_stock_threshold")) != c.is_low_stock


@dataclass(frozen=True)
class Where:
    """A row filter in both forms: ``test`` on a ``Change``, ``sql`` on the relation ``c``.
    ``fields``: the fields a matching update must have set (``None``: any)."""

    name: str
    sql: str
    test: Callable[[Change], bool]
    fields: frozenset[str] | None = None


EVERY = Where("every", "1 = 1", lambda c: True)
PRICE_CHANGED = Where(
    "price changed",
    "c.kind = 'updated' AND c.old_price <> c.price",
    lambda c: c.kind == UPDATED and "price" in c.before and c.before["price"] != c.get("price"),
    frozenset({"price"}),
)
STOCK_CHANGED = Where(
    "stock changed",
    "c.kind <> 'deleted' AND c.old_stock <> c.stock",
    lambda c: c.kind != DELETED and c.old("stock") != c.get("stock"),
    frozenset({"stock"}),
)
THRESHOLD_CROSSED = Where(
    "threshold crossed",
    "c.kind = 'created' OR (c.kind = 'updated' AND "
    "(c.old_stock < c.old_threshold) <> (c.stock < c.threshold))",
    _crosses,
    frozenset({"stock", "low_stock_threshold"}),
)

THRESHOLD_CHANGED = Where(
    "threshold changed",
    "c.kind = 'updated' AND c.old_threshold <> c.threshold",
    lambda c: c.kind == UPDATED and c.old("low_stock_threshold") != c.get("low_stock_threshold"),
    frozenset({"low_stock_threshold"}),
)

# The filter matching every change of a field that ``StagedChanges`` may carry.
_FIELD_CHANGED = {"price": PRICE_CHANGED, "stock": STOCK_CHANGED}

NOT_CREATED = Where("not created", "c.kind <> 'created'", lambda c: c.kind != CREATED)
# ``STOCK_CHANGED`` split by kind: of a product that existed before the write, of a new one.
STOCK_UPDATED = Where(
    "stock updated",
    "c.kind = 'updated' AND c.old_stock <> c.stock",
    lambda c: c.kind == UPDATED and c.old("stock") != c.get("stock"),
    frozenset({"stock"}),
)
STOCK_CREATED = Where(
    "stock created",
    "c.kind = 'created' AND c.old_stock <> c.stock",
    lambda c: c.kind == CREATED and c.old("stock") != c.get("stock"),
    frozenset({"stock"}),
)

# The relation every change set offers to SQL (``select``): column -> (value, type).
# The getters read ``after``/``before`` directly (``get``/``old`` only for what is missing):
# ``select`` calls them for every row of a bulk write.


def _new(name: str) -> Callable[[int, Change], Any]:
    def value(i: int, c: Change) -> Any:
        after = c.after
        return after[name] if name in after else c.get(name)

    return value


def _old(name: str) -> Callable[[int, Change], Any]:
    def value(i: int, c: Change) -> Any:
        before = c.before
        return before[name] if name in before else c.old(name)

    return value


_ID = models.IntegerField()
_TEXT = models.CharField()
_F = Product._meta.get_field
COLUMNS: dict[str, tuple[Callable[[int, Change], Any], models.Field]] = {
    "ord": (lambda i, c: i, _ID),
    "pk": (lambda i, c: c.pk, Product._meta.pk),
    "kind": (lambda i, c: c.kind, _TEXT),
    "sku": (_new("sku"), _F("sku")),
    "old_sku": (_old("sku"), _F("sku")),
    "name": (_new("name"), _F("name")),
    "old_name": (_old("name"), _F("name")),
    "price": (_new("price"), _F("price")),
    "old_price": (_old("price"), _F("price")),
    "stock": (_new("stock"), _F("stock")),
    "old_stock": (_old("stock"), _F("stock")),
    "threshold": (_new("low_stock_threshold"), _F("low_stock_threshold")),
    "old_threshold": (_old("low_stock_threshold"), _F("low_stock_threshold")),
}
_REFERENCE = re.compile(r"\bc\.(\w+)")


@functools.lru_cache(maxsize=256)
def _json_select(using: str, vendor: str, columns: str) -> tuple[str, tuple[str, ...]]:
    """``SELECT columns`` over change rows sent as one JSON parameter, and the ``COLUMNS``
    it reads (in order), built once per database and columns: an effect's columns are fixed
    text, and building them was a tenth of a single ``save()``'s Python."""
    connection = connections[using]
    used = tuple(name for name in COLUMNS if name in set(_REFERENCE.findall(columns)))
    source = json_rows_sql(connection, [COLUMNS[n][1] for n in used], used, alias="c")
    return f"SELECT {columns} FROM {source}", used


class ChangeSet:
    """What one write (or one batch of writes) changed; read by every effect."""

    using: str
    now: Any  # the batch's timestamp for history rows
    # The location the stock changes apply to (``change_context(location_id=...)`` when the
    # write was made); None: the default location (``app.tracking.levels``).
    location_id: int | None = None

    def rows(self, where: Where = EVERY) -> list[Change]:
        raise NotImplementedError

    def has(self, where: Where = EVERY) -> bool:
        """Whether some row may match ``where`` (cheap: no query)."""
        raise NotImplementedError

    def values(self, names: Sequence[str], where: Where = EVERY) -> list[tuple]:
        """Tuples of the ``COLUMNS`` ``names`` of the rows matching ``where``, in write
        order: what an effect needs, without building a ``Change`` per staged row."""
        raise NotImplementedError

    def select(
        self,
        columns: str,
        where: Where = EVERY,
        params: Sequence[Any] = (),
        *,
        ordered: bool = True,
    ) -> Iterator[tuple[str, list[Any]]]:
        """``SELECT {columns} FROM <changes> c`` statements over the rows matching
        ``where``, in write order, each with its parameters (``params`` are those of
        ``columns``). ``columns`` refer to ``COLUMNS`` as ``c.<name>``. ``ordered=False``:
        in any order (an effect that groups or joins the rows spares the database a sort
        of the staged ones)."""
        raise NotImplementedError

    def select_last(
        self, columns: str, where: Where = EVERY, params: Sequence[Any] = ()
    ) -> Iterator[tuple[str, list[Any]]]:
        """``select`` over the last row matching ``where`` of each product (the state a
        product is left in, for effects that compare it with a threshold)."""
        return self.select(columns, where, params)

    def one_per_product(self, where: Where = EVERY) -> bool:
        """Whether no product has two rows matching ``where`` (an effect then need not
        group them by product). ``False`` when unknown."""
        return False

    def instances(self, where: Where = EVERY) -> dict[Any, Product]:
        """The ``Product`` instances the write had, by primary key, of the rows matching
        ``where`` (none for the SQL route's rows)."""
        return {}

    def product_count(self, where: Where = EVERY) -> int | None:
        """How many products the rows matching ``where`` name, when known without a query
        or a pass over the rows; else ``None``."""
        return None

    def notes(self, name: str) -> list[Any]:
        """A list effect ``name`` fills with what it did (the alerts it opened, say), for
        the write that made the change set to report."""
        notes = self.__dict__.setdefault("_notes", {})
        return notes.setdefault(name, [])


class RowChanges(ChangeSet):
    """Changes held as Python rows."""

    def __init__(
        self, rows: list[Change], *, using: str, now: Any = None, location_id: Any = ...
    ) -> None:
        self.changes = rows
        self.using = using
        if location_id is ...:
            location_id = current_change_context().location_id
        self.location_id = location_id
        self.now = now or timezone.now()
        self._matching: dict[str, list[Change]] = {}

    def rows(self, where: Where = EVERY) -> list[Change]:
        found = self._matching.get(where.name)
        if found is None:
            test = where.test
            found = self._matching[where.name] = (
                self.changes if where is EVERY else [c for c in self.changes if test(c)]
            )
        return found

    def has(self, where: Where = EVERY) -> bool:
        return bool(self.rows(where))

    def select_last(
        self, columns: str, where: Where = EVERY, params: Sequence[Any] = ()
    ) -> Iterator[tuple[str, list[Any]]]:
        rows = self.rows(where)
        last = list({c.pk: c for c in rows}.values())
        if len(last) < len(rows):  # a product changed twice: its last change counts
            rows = RowChanges(last, using=self.using, now=self.now, location_id=self.location_id)
            return rows.select(columns, EVERY, params)
        return self.select(columns, where, params)

    def instances(self, where: Where = EVERY) -> dict[Any, Product]:
        return {c.pk: c.instance for c in self.rows(where) if c.instance is not None}

    def values(self, names: Sequence[str], where: Where = EVERY) -> list[tuple]:
        getters = [COLUMNS[name][0] for name in names]
        return [tuple([get(i, c) for get in getters]) for i, c in enumerate(self.rows(where))]

    def select(
        self,
        columns: str,
        where: Where = EVERY,
        params: Sequence[Any] = (),
        *,
        ordered: bool = True,
    ) -> Iterator[tuple[str, list[Any]]]:
        rows = self.rows(where)
        if not rows:
            return
        sql, used = _json_select(self.using, connections[self.using].vendor, columns)
        getters = [COLUMNS[name][0] for name in used]
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            values = [[get(start + i, c) for get in getters] for i, c in enumerate(chunk)]
            yield sql, [*params, json_rows(values)]


class StagedChanges(ChangeSet):
    """The SQL route's changes: ``source`` is a ``SELECT`` giving ``COLUMNS`` for each
    changed row (after the write), one row per product; ``field`` is the one field the
    write set (``fields``: the fields, for a write setting several); ``count`` how many
    rows changed; ``counts`` how many rows match some filters, where the writer knows
    (``product_count``). A row's ``before`` holds the old values of those fields (none
    for a ``created`` row)."""

    def __init__(
        self,
        source: str,
        *,
        field: str | None = None,
        fields: Sequence[str] = (),
        count: int,
        using: str,
        at: Any,
        now: Any = None,
        counts: dict[Where, int] | None = None,
    ) -> None:
        self.source, self.count = source, count
        # Product counts of filters the writer knows (each row one product), for
        # ``product_count``.
        self.counts = counts or {}
        self.fields = tuple(fields) or (field,)
        self.field = self.fields[0]
        self.using = using
        self.location_id = current_change_context().location_id
        self.at = at
        self.now = now or timezone.now()
        self._matching: dict[str, list[Change]] = {}

    def has(self, where: Where = EVERY) -> bool:
        return self.count > 0 and (where.fields is None or not where.fields.isdisjoint(self.fields))

    def one_per_product(self, where: Where = EVERY) -> bool:
        return True  # the source's contract: one row per product

    def product_count(self, where: Where = EVERY) -> int | None:
        # One row per product, each with its one ``field`` changed: the filter for that
        # change matches every row. A write of several fields (the upsert) changes some of
        # them per row: unknown.
        if not self.has(where):
            return 0
        if where in self.counts:
            return self.counts[where]
        if len(self.fields) > 1:
            return None
        return self.count if _FIELD_CHANGED.get(self.field) is where else None

    def select(
        self,
        columns: str,
        where: Where = EVERY,
        params: Sequence[Any] = (),
        *,
        ordered: bool = True,
    ) -> Iterator[tuple[str, list[Any]]]:
        if self.has(where):
            order = " ORDER BY c.ord" if ordered else ""
            yield (
                f"SELECT {columns} FROM ({self.source}) c WHERE {where.sql}{order}",
                list(params),
            )

    def values(self, names: Sequence[str], where: Where = EVERY) -> list[tuple]:
        columns = ", ".join(f"c.{name}" for name in names)
        connection = connections[self.using]
        convert = column_converter(connection, Product, "price")
        prices = [i for i, name in enumerate(names) if name in ("price", "old_price")]
        found: list[tuple] = []
        for sql, params in self.select(columns, where):
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                rows = cursor.fetchall()
            if convert is None or not prices:
                found.extend(rows)
                continue
            for row in rows:
                row = list(row)
                for i in prices:
                    row[i] = convert(row[i])
                found.append(tuple(row))
        return found

    def rows(self, where: Where = EVERY) -> list[Change]:
        """The ``Change`` rows matching ``where``, read once per filter (several effects
        may ask)."""
        found = self._matching.get(where.name)
        if found is None:
            found = self._matching[where.name] = list(self._read(where))
        return found

    def _read(self, where: Where) -> Iterator[Change]:
        """The rows matching ``where`` as ``Change`` rows: ``after`` every field, ``before``
        the old values of ``fields`` (of an updated row)."""
        connection = connections[self.using]
        convert = column_converter(connection, Product, "price") or (lambda value: value)
        fields = self.fields
        olds = ", ".join(f"c.{_COLUMN_OF[field]}" for field in fields)
        reads = [
            convert if field == "price" else int if field in _COUNTS else _same for field in fields
        ]
        at = self.at
        columns = f"c.pk, c.kind, c.sku, c.name, c.price, c.stock, c.threshold, {olds}"
        for sql, params in self.select(columns, where):
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                fetched = cursor.fetchall()
            for pk, kind, sku, name, price, stock, threshold, *old in fetched:
                after = {
                    "sku": sku,
                    "name": name,
                    "price": convert(price),
                    "stock": stock,
                    "low_stock_threshold": threshold,
                }
                if kind == CREATED:
                    yield Change(pk, CREATED, {}, after, at=at)
                    continue
                before = {
                    field: read(value)
                    for field, read, value in zip(fields, reads, old, strict=True)
                }
                yield Change(pk, UPDATED, before, after, at=at)


# A field's old value in ``COLUMNS``; the fields read as integers.
_COLUMN_OF = {
    "sku": "old_sku",
    "name": "old_name",
    "price": "old_price",
    "stock": "old_stock",
    "low_stock_threshold": "old_threshold",
}
_COUNTS = frozenset({"stock", "low_stock_threshold"})


def _same(value: Any) -> Any:
    return value


# --- changes from instances (the signal adapters) -------------------------------------


def saved(products: Sequence[Product], *, created: bool, update_fields: Any = None) -> list[Change]:
    """The changes ``post_save`` reports for ``products``. Old values of tracked fields
    come from ``_before_write`` (read under the row lock by the write), old SKU and name
    from the values the instance was loaded with, for the fields the write set."""
    out = []
    append = out.append
    stamped = update_fields is None or "updated_at" in update_fields
    names = FIELDS if update_fields is None else [f for f in ("sku", "name") if f in update_fields]
    for product in products:
        values = product.__dict__
        try:
            after = {
                "sku": values["sku"],
                "name": values["name"],
                "price": values["price"],
                "stock": values["stock"],
                "low_stock_threshold": values["low_stock_threshold"],
            }
        except KeyError:  # a narrow read left some deferred: loaded now, as the write
            # left them (in a change batch the effects read them later, after other writes
            # of the row may have changed them), as the instance would load them
            after = {name: getattr(product, name) for name in FIELDS}
        at = values.get("updated_at") if stamped else None
        if created:
            append(Change(product.pk, CREATED, {}, after, at, product))
            continue
        before = {}
        written = values.get("_before_write")
        if written:
            for name, value in written.items():
                before[name] = quantize_price(value) if name == "price" else value
        loaded = values.get("_loaded")
        if loaded:
            for name in names:
                if name in ("sku", "name") and name in loaded:
                    before[name] = loaded[name]
        append(Change(product.pk, UPDATED, before, after, at, product))
    return out


def deleted(product: Product) -> Change:
    """The change ``post_delete`` reports: ``after`` the values deleted, ``before`` the
    values the instance was loaded with."""
    values = product.__dict__
    loaded = values.get("_loaded") or {}
    before = {name: loaded[name] for name in FIELDS if name in loaded}
    after = {name: values[name] for name in FIELDS if name in values}
    return Change(product.pk, DELETED, before, after, None, product)
