"""Consecutive map steps over the same SKUs, written to the products once.

``set_prices`` then ``adjust_stock`` (say) on the SQL route would each stage, lock and
``UPDATE`` every product. When consecutive map steps (``set_prices``, and ``set_stock`` /
``adjust_stock`` without a location) list the same SKUs in the same order, they are staged
together instead: one temporary table holds each product's values before the group and
each step's value, the products are locked once, and one ``UPDATE`` writes the final price
and stock. What happened between the steps is kept in the stage, as SQL expressions over
its columns (the price after step ``k`` is the value of the last price step up to ``k``;
the stock after it, the old stock with each step's delta added or value set), so each
step is still run as a step of its own:

* validated in order, as if the earlier steps had been written (stock totals against
  other locations, unknown SKUs, stock range), failing with that step's located errors,
  before anything is written;
* counted, listed (price changes) and reported on its own;
* described by its own change set (``StagedChanges`` over the stage: the values before and
  after that step), handed to the effects in its own change batch, in step order. History
  rows, ledger rows, webhook events and alert episodes are therefore those of running the
  steps one after another (tests/pipelines/test_identity.py, test_folded.py).

The effects that read the product table rather than the change set (the levels effect
sets the default location's level from the product's stock) see the final values: the
same end state. Per-location thresholds, whose alerts compare the levels themselves,
would miss an episode opened by one stock step and closed by the next, so two stock steps
are not folded while any level has its own threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.utils import timezone

from ..core import encoding, sqlrows
from ..models import MAX_STOCK, Product, StockLevel
from ..tracking import adapters
from ..tracking.batch import record_set
from ..tracking.changes import StagedChanges
from . import located, staged
from .base import stock_adjustment_error
from .writer import MAX_LISTED, MAX_REPORTED, StepUnit

FOLD = "stockpipe_fold"
FOLD_INPUT = "stockpipe_fold_input"  # PostgreSQL: the map's members, until staged
MAX_FOLDED = 16  # steps per group: each adds a column and grows the expressions


@dataclass(frozen=True)
class MapWrite:
    """What a map step writes: ``field`` (``price`` or ``stock``) of each SKU set to its
    value, or (``add``) the value added; ``key`` is the step's spec field (error locations)."""

    field: str
    values: dict[str, Any]
    key: str
    add: bool = False


def group(steps: Sequence[Any], start: int, unit: StepUnit) -> int:
    """How many steps from ``start`` on fold into one write (0 or 1: none, run the step as
    usual). ``unit`` is the first step's (the route depends on the run, not the step)."""
    first = steps[start].map_write()
    if first is None or start + 1 == len(steps) or steps[start + 1].map_write() is None:
        return 0
    if not staged.applies(unit):
        return 0
    keys = list(first.values)
    end = start + 1
    stocks = first.field == "stock"
    while end < len(steps) and end - start < MAX_FOLDED:
        write = steps[end].map_write()
        if write is None or len(write.values) != len(keys) or list(write.values) != keys:
            break
        if write.field == "stock":
            if stocks and _location_thresholds(unit.using):
                break
            stocks = True
        end += 1
    return end - start


def _location_thresholds(using: str) -> bool:
    return StockLevel.objects.using(using).filter(low_stock_threshold__isnull=False).exists()


class _Stage:
    """SQL over the fold stage: the state of each product after each step."""

    def __init__(self, writes: Sequence[MapWrite]) -> None:
        self.writes = writes

    def after(self, field: str, k: int) -> str:
        """``field`` of the staged product after step ``k`` (0-based; -1: before the group)."""
        expr = f"s.{field}0"
        for j, write in enumerate(self.writes[: k + 1]):
            if write.field == field:
                expr = f"({expr} + s.v{j})" if write.add else f"s.v{j}"
        return expr

    def changed(self, k: int) -> str:
        """Whether step ``k`` changes the staged product."""
        write = self.writes[k]
        if write.add:
            return f"s.v{k} <> 0"
        return f"{self.after(write.field, k - 1)} <> s.v{k}"


def write_folded(units: Sequence[StepUnit], writes: Sequence[MapWrite]) -> None:
    """Run the map steps ``writes`` (of ``units``, same SKUs in the same order) as one
    staging, one lock pass and one product ``UPDATE``; see the module docstring."""
    first = units[0]
    connection, pg, product, _ = staged._target(first, "price")
    qn = connection.ops.quote_name
    stage = _Stage(writes)
    keys = list(writes[0].values)
    with connection.cursor() as cursor:
        _create(cursor, pg, writes)
        _fill(cursor, pg, writes, keys, product, qn)
        for k, (unit, write) in enumerate(zip(units, writes, strict=True)):
            _validate(cursor, unit, write, k, stage, first_step=k == 0)
        counts = _counts(cursor, stage, len(writes))
        written_at = timezone.now()

        def write_all() -> None:
            sets = []
            for name in ("price", "stock"):
                if any(w.field == name for w in writes):
                    column = qn(Product._meta.get_field(name).column)
                    sets.append(f"{column} = {stage.after(name, len(writes) - 1)}")
            changed = " OR ".join(f"({stage.changed(k)})" for k in range(len(writes)))
            with sqlrows.hash_joins_off(cursor):
                cursor.execute(
                    f"UPDATE {product} SET {', '.join(sets)}, updated_at = %s FROM {FOLD} s "
                    f"WHERE {product}.id = s.product_id AND ({changed})",
                    [connection.ops.adapt_datetimefield_value(written_at)],
                )

        for k, (unit, write) in enumerate(zip(units, writes, strict=True)):
            updated = counts[k]
            if write.field == "price":
                _list_prices(cursor, unit, stage, k)
            unit.tracked(
                _effects(unit, write, k, stage, updated, written_at, then=write_all)
                if k == 0
                else _effects(unit, write, k, stage, updated, written_at)
            )
            unit.counts.updated += updated
            unit.counts.unchanged += len(keys) - updated
            if write.field == "price":
                unit.state.price_change_count += updated
            unit.advance(len(keys))


def _create(cursor, pg: bool, writes: Sequence[MapWrite]) -> None:
    """The stage of this group: ``(ord, sku, product_id, name, threshold, price0, stock0,
    v0, v1, ...)``, ``v<k>`` step ``k``'s value, typed as the product column it goes to (a
    price is rounded as the product's would be). ``name`` and ``threshold`` are the locked
    product's, which the group does not write: the change rows are read from the stage
    alone (``_changed_rows``)."""
    connection = cursor.db
    field = Product._meta.get_field
    price = field("price").db_type(connection)
    stock = "bigint" if pg else "INTEGER"
    types = {"price": price, "stock": stock}
    values = "".join(f", v{k} {types[w.field]}" for k, w in enumerate(writes))
    cursor.execute(f"DROP TABLE IF EXISTS {FOLD}")  # an earlier group's, in this transaction
    cursor.execute(
        f"CREATE TEMP TABLE {FOLD} (ord integer PRIMARY KEY, sku text NOT NULL, "
        f"product_id bigint, name {field('name').db_type(connection)}, "
        f"threshold {field('low_stock_threshold').db_type(connection)}, "
        f"price0 {price}, stock0 {stock}{values})" + (" ON COMMIT DROP" if pg else "")
    )


def _fill(cursor, pg: bool, writes: Sequence[MapWrite], keys: list[str], product, qn) -> None:
    """Stage every SKU with each step's value, lock the products (primary-key order, as
    every writer), and take their ids, names, thresholds, prices and stock
    (``staged._stage`` for one map)."""
    rows = dict(zip(keys, zip(*(w.values.values() for w in writes), strict=True), strict=True))
    payload = encoding.dumps(rows, default=str)  # in the map's order; Decimals exact
    names = ", ".join(f"v{k}" for k in range(len(writes)))
    price = qn(Product._meta.get_field("price").column)
    stock = qn(Product._meta.get_field("stock").column)
    name = qn(Product._meta.get_field("name").column)
    threshold = qn(Product._meta.get_field("low_stock_threshold").column)
    if pg:
        # The map's members go to a table of their own first (analyzed: the planner then
        # joins 100,000 SKUs by hash, not by 100,000 index probes), then each with its
        # locked product into the stage: every stage row written once (was: inserted, then
        # updated with its product, twice the writes).
        cursor.execute(  # json, not jsonb: keeps the members' order
            f"CREATE TEMP TABLE {FOLD_INPUT} ON COMMIT DROP AS SELECT t.n AS ord, "
            "t.key AS sku, t.value FROM json_each(%s::json) WITH ORDINALITY AS t(key, value, n)",
            [payload],
        )
        cursor.execute(f"ANALYZE {FOLD_INPUT}")
        values = ", ".join(f"(i.value->>{k})::numeric" for k in range(len(writes)))
        # Locked first: a product renamed or deleted meanwhile is not taken by its old SKU.
        cursor.execute(
            f"INSERT INTO {FOLD} (ord, sku, product_id, name, threshold, price0, stock0, "
            f"{names}) SELECT i.ord, i.sku, l.id, l.name, l.threshold, l.price, l.stock, "
            f"{values} FROM {FOLD_INPUT} i LEFT JOIN (SELECT p.id, p.sku, p.{name} AS name, "
            f"p.{threshold} AS threshold, p.{price} AS price, p.{stock} AS stock "
            f"FROM {product} p WHERE p.sku IN (SELECT sku FROM {FOLD_INPUT}) "
            "ORDER BY p.id FOR UPDATE) l ON l.sku = i.sku"
        )
        cursor.execute(f"DROP TABLE {FOLD_INPUT}")
        cursor.execute(f"ANALYZE {FOLD}")
    else:  # the transaction holds SQLite's write lock already (BEGIN IMMEDIATE)
        values = ", ".join(f"j.value ->> {k}" for k in range(len(writes)))
        cursor.execute(  # ord: the rowid, given in the members' order
            f"INSERT INTO {FOLD} (sku, product_id, name, threshold, price0, stock0, {names}) "
            f"SELECT j.key, p.id, p.{name}, p.{threshold}, p.{price}, p.{stock}, {values} "
            f"FROM json_each(%s) j LEFT JOIN {product} p ON p.sku = j.key",
            [payload],
        )


def _validate(
    cursor, unit: StepUnit, write: MapWrite, k: int, stage: _Stage, *, first_step: bool
) -> None:
    """Step ``k``'s checks, in the order its own run makes them, on the values the earlier
    steps of the group leave: totals against other locations, unknown SKUs (the same for
    every step, so found by the first), the stock range of an adjustment."""
    if write.field == "stock":
        new = stage.after("stock", k)

        def totals(pks: list[int]) -> list[tuple[int, str, int]]:
            cursor.execute(
                f"SELECT s.product_id, s.sku, {new} FROM {FOLD} s "
                f"WHERE s.product_id IN ({', '.join(['%s'] * len(pks))}) ORDER BY s.product_id",
                pks,
            )
            return [(pk, sku, int(total)) for pk, sku, total in cursor.fetchall()]

        located.check_totals(
            unit, write.values, key=write.key, absolute=not write.add, new_totals=totals
        )
    if first_step:
        cursor.execute(f"SELECT sku FROM {FOLD} WHERE product_id IS NULL ORDER BY ord LIMIT 1")
        if cursor.fetchone() is not None:
            cursor.execute(
                f"SELECT sku FROM {FOLD} WHERE product_id IS NULL ORDER BY ord LIMIT {MAX_REPORTED}"
            )
            raise unit.failure(
                [((write.key, sku), f"unknown SKU {sku!r}") for (sku,) in cursor.fetchall()]
            )
    if write.add:
        old = stage.after("stock", k - 1)
        cursor.execute(
            f"SELECT s.sku, {old}, s.v{k} FROM {FOLD} s "
            f"WHERE {old} + s.v{k} < 0 OR {old} + s.v{k} > {MAX_STOCK} "
            f"ORDER BY s.ord LIMIT {MAX_REPORTED}"
        )
        bad = cursor.fetchall()
        if bad:
            raise unit.failure(
                [
                    ((write.key, sku), stock_adjustment_error(sku, int(s), int(d)))
                    for sku, s, d in bad
                ]
            )


def _counts(cursor, stage: _Stage, steps: int) -> list[int]:
    """How many products each step changes."""
    sums = ", ".join(
        f"COALESCE(SUM(CASE WHEN {stage.changed(k)} THEN 1 ELSE 0 END), 0)" for k in range(steps)
    )
    cursor.execute(f"SELECT {sums} FROM {FOLD} s")
    return [int(n) for n in cursor.fetchone()]


def _list_prices(cursor, unit: StepUnit, stage: _Stage, k: int) -> None:
    """The price changes of step ``k`` the run's result lists (up to ``MAX_LISTED``)."""
    state = unit.state
    room = MAX_LISTED - len(state.price_changes)
    if room <= 0:
        return
    cursor.execute(
        f"SELECT s.sku, {stage.after('price', k - 1)}, s.v{k} FROM {FOLD} s "
        f"WHERE {stage.changed(k)} ORDER BY s.ord LIMIT {room}"
    )
    convert = staged._price_converter(cursor.db)
    for sku, old, new in cursor.fetchall():
        state.price_changes.append(
            {"step": unit.index, "sku": sku, "old": str(convert(old)), "new": str(convert(new))}
        )


def _effects(
    unit: StepUnit,
    write: MapWrite,
    k: int,
    stage: _Stage,
    updated: int,
    at: Any,
    then: Any = None,
):
    """The write of step ``k`` for ``unit.tracked``: ``then`` (the products' one
    ``UPDATE``, with the first step), and the step's change set."""

    def run() -> None:
        if then is not None:
            then()
        if updated and adapters.saves_tracked():
            record_set(
                StagedChanges(
                    _changed_rows(stage, k),
                    field=write.field,
                    count=updated,
                    using=unit.using,
                    at=at,
                )
            )

    return run


def _changed_rows(stage: _Stage, k: int) -> str:
    """Step ``k``'s change set rows (``changes.COLUMNS``): the products it changed, with
    their values before and after it, in the map's order.

    Read from the stage alone: its SKU is the product's (matched exactly, the row locked),
    its name and threshold the locked product's, which no step of the group writes. Each
    effect reads these rows; joined back to the products it rescanned the table the group
    had just rewritten (twice its size by then: at 1,000,000 products more than PostgreSQL's
    buffers hold), once per effect and step."""
    return (
        "SELECT s.ord AS ord, s.product_id AS pk, 'updated' AS kind, s.sku AS sku, "
        "s.sku AS old_sku, s.name AS name, s.name AS old_name, "
        f"{stage.after('price', k)} AS price, {stage.after('price', k - 1)} AS old_price, "
        f"{stage.after('stock', k)} AS stock, {stage.after('stock', k - 1)} AS old_stock, "
        "s.threshold AS threshold, s.threshold AS old_threshold "
        f"FROM {FOLD} s WHERE s.product_id IS NOT NULL AND {stage.changed(k)}"
    )
