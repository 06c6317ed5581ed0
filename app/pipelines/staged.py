"""Map steps (``set_prices``, ``set_stock``, ``adjust_stock``) written in SQL, set-based.

The object route (``StepUnit.save``) builds a ``Product`` per row so that every receiver
sees each save. When no receiver needs instances (``fastpath.rows_suffice``: only the
project's own receivers listen) and the run is not a dry run (whose per-field diff is built
from instances), a SKU -> value map is
written without them: it is staged in a temporary table, checked (unknown SKU, stock out
of range: nothing is written then), and applied with one ``INSERT ... SELECT`` per history
table and one ``UPDATE ... FROM``. Products whose stock crosses their threshold are loaded
and reconciled by ``alerts.reconcile_alerts``, as after ``save()``; webhook outbox rows are
built from the changed rows when someone subscribes to product events. The identity test
(tests/pipelines/test_identity.py) holds both routes to one ``save()`` per product.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db import connections
from django.utils import timezone

from ..models import MAX_STOCK, PriceHistory, Product, StockMovement
from ..services import cache_guard, encoding, fastpath, product_cache, tracking
from ..services.context import current_change_context
from ..webhooks import outbox
from .base import stock_adjustment_error

if TYPE_CHECKING:
    from .writer import StepUnit

STAGE = "stockpipe_stage"


def applies(unit: StepUnit) -> bool:
    """Whether ``unit``'s map step may take this route (else the object route)."""
    return not unit.state.dry_run and fastpath.rows_suffice()


def write_map(
    unit: StepUnit, field: str, values: dict[str, Any], *, key: str, add: bool = False
) -> None:
    """Set ``field`` (``price`` or ``stock``) of each SKU to its value, or add it (``add``).

    ``key`` is the step's spec field, for error locations.
    """
    from .writer import MAX_LISTED, MAX_REPORTED

    connection = connections[unit.using]
    pg = connection.vendor == "postgresql"
    qn = connection.ops.quote_name
    product = qn(Product._meta.db_table)

    def typed(sql_type: str) -> str:  # a bound value in a SELECT list needs a type on PG
        return f"%s::{sql_type}" if pg else "%s"

    value = "CAST(s.value AS INTEGER)" if field == "stock" else "s.value"
    column = qn(Product._meta.get_field(field).column)

    def expressions(table: str) -> tuple[str, str]:
        """The new value, and whether the row changes, for the product row ``table``."""
        current = f"{table}.{column}"
        if add:
            return f"{current} + {value}", f"{value} <> 0"
        return value, f"{current} <> {value}"

    new, changed = expressions("p")
    # The staged rows with their products, in the map's order: CROSS JOIN makes SQLite
    # walk the stage (by ``ord``) and fetch each product by primary key, so nothing is sorted.
    rows = f"FROM {STAGE} s CROSS JOIN {product} p WHERE p.id = s.product_id"

    with connection.cursor() as cursor:
        _stage(cursor, pg, values, product)
        cursor.execute(
            f"SELECT sku FROM {STAGE} WHERE product_id IS NULL ORDER BY ord LIMIT {MAX_REPORTED}"
        )
        unknown = [row[0] for row in cursor.fetchall()]
        if unknown:
            raise unit.failure([((key, sku), f"unknown SKU {sku!r}") for sku in unknown])
        if field == "stock" and add:
            cursor.execute(
                f"SELECT s.sku, p.stock, s.value {rows} "  # numeric: no overflow
                f"AND (p.stock + s.value < 0 OR p.stock + s.value > {MAX_STOCK}) "
                f"ORDER BY s.ord LIMIT {MAX_REPORTED}"
            )
            bad = cursor.fetchall()
            if bad:
                raise unit.failure(
                    [((key, sku), stock_adjustment_error(sku, s, int(d))) for sku, s, d in bad]
                )

        state = unit.state
        if field == "price":
            room = MAX_LISTED - len(state.price_changes)
            if room > 0:
                cursor.execute(
                    f"SELECT s.sku, p.price {rows} AND {changed} ORDER BY s.ord LIMIT {room}"
                )
                convert = _price_converter(connection)
                for sku, old in cursor.fetchall():
                    state.price_changes.append(
                        {
                            "step": unit.index,
                            "sku": sku,
                            "old": str(convert(old)),
                            "new": str(values[sku]),
                        }
                    )
        if cache_guard.enabled():
            cursor.execute(f"SELECT s.sku {rows} AND {changed}")
            product_cache.invalidate([row[0] for row in cursor.fetchall()], using=unit.using)

        def write() -> None:
            with tracking.collecting_changes(unit.using) as batch:
                ctx = current_change_context()
                at = connection.ops.adapt_datetimefield_value(batch.now)
                who = (at, ctx.user_id, ctx.source)
                if field == "price":
                    history = _columns(connection, PriceHistory, tracking.PRICE_COLUMNS)
                    cursor.execute(
                        f"INSERT INTO {history} SELECT p.id, p.sku, p.name, p.price, s.value, "
                        f"{typed('timestamptz')}, {typed('integer')}, {typed('text')} "
                        f"{rows} AND {changed} ORDER BY s.ord",
                        who,
                    )
                else:
                    delta, after = (value, new) if add else (f"{value} - p.stock", value)
                    ledger = _columns(connection, StockMovement, tracking.MOVEMENT_COLUMNS)
                    cursor.execute(
                        f"INSERT INTO {ledger} SELECT p.id, p.sku, {delta}, {after}, "
                        f"{typed('text')}, {typed('text')}, {typed('timestamptz')}, "
                        f"{typed('integer')}, {typed('text')} "
                        f"{rows} AND {changed} ORDER BY s.ord",
                        (ctx.reason, ctx.idempotency_key, *who),
                    )
                    # Crossing the threshold either way opens or resolves an alert.
                    cursor.execute(
                        f"SELECT p.id {rows} AND {changed} AND "
                        f"(p.stock < p.low_stock_threshold) <> ({new} < p.low_stock_threshold)"
                    )
                    crossing = [row[0] for row in cursor.fetchall()]
                written_at = timezone.now()
                if outbox.wants_product_updates(unit.using):
                    _record_events(cursor, connection, field, new, rows, changed, written_at, unit)
                set_to, changes = expressions(product)
                cursor.execute(
                    f"UPDATE {product} SET {column} = {set_to}, updated_at = %s FROM {STAGE} s "
                    f"WHERE {product}.id = s.product_id AND {changes}",
                    [connection.ops.adapt_datetimefield_value(written_at)],
                )
                updated = cursor.rowcount
                if field == "stock":
                    for start in range(0, len(crossing), tracking.CHUNK):
                        ids = crossing[start : start + tracking.CHUNK]
                        for obj in Product.objects.using(unit.using).filter(pk__in=ids):
                            batch.alert_checks[obj.pk] = obj
            unit.counts.updated += updated
            unit.counts.unchanged += len(values) - updated
            if field == "price":
                state.price_change_count += updated

        unit.tracked(write)
    unit.advance(len(values))


def _record_events(cursor, connection, field, new, rows, changed, written_at, unit) -> None:
    """The webhook outbox rows ``save()`` would write (``product.updated``,
    ``price.changed``), from the rows about to change, in the map's order."""
    price, stock = ("s.value", "p.stock") if field == "price" else ("p.price", new)
    cursor.execute(
        f"SELECT p.id, p.sku, p.name, {price}, {stock}, p.low_stock_threshold, p.{field} "
        f"{rows} AND {changed} ORDER BY s.ord"
    )
    convert = _price_converter(connection)
    prices = (3, 6) if field == "price" else (3,)
    changed_rows = []
    for row in cursor.fetchall():
        row = list(row)
        for i in prices:
            row[i] = convert(row[i])
        changed_rows.append(row)
    outbox.record_field_changes(field, changed_rows, using=unit.using, at=written_at)


def _price_converter(connection):
    """Prices read with raw SQL, converted as the ORM would (a Decimal with two places)."""
    from .writer import column_converter

    return column_converter(connection, "price") or (lambda value: value)


def _stage(cursor, pg: bool, values: dict[str, Any], product: str) -> None:
    """The map as rows ``(ord, sku, value, product_id)`` of a temporary table of this
    connection; ``product_id`` is null for an unknown SKU. The products are locked (in
    primary-key order, as by every other writer) before their ids are taken."""
    payload = encoding.dumps(values, default=str)  # in the map's order; Decimals exact
    if pg:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ord integer PRIMARY KEY, "
            "sku text NOT NULL, value numeric NOT NULL, product_id bigint)"
        )
        cursor.execute(f"TRUNCATE {STAGE}")
        cursor.execute(  # json, not jsonb: keeps the members' order
            f"INSERT INTO {STAGE} (ord, sku, value) SELECT t.n, t.key, t.value::numeric "
            "FROM json_each_text(%s::json) WITH ORDINALITY AS t(key, value, n)",
            [payload],
        )
        cursor.execute(f"ANALYZE {STAGE}")
        # Locked first: a product renamed or deleted meanwhile is not taken by its old SKU.
        cursor.execute(
            f"UPDATE {STAGE} SET product_id = l.id FROM (SELECT p.id, p.sku FROM {product} p "
            f"WHERE p.sku IN (SELECT sku FROM {STAGE}) ORDER BY p.id FOR UPDATE) l "
            f"WHERE l.sku = {STAGE}.sku"
        )
    else:  # the transaction holds SQLite's write lock already (BEGIN IMMEDIATE)
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ord INTEGER PRIMARY KEY, "
            "sku TEXT NOT NULL, value NUMERIC NOT NULL, product_id INTEGER)"
        )
        cursor.execute(f"DELETE FROM {STAGE}")
        cursor.execute(  # ord: the rowid, given in the members' order
            f"INSERT INTO {STAGE} (sku, value, product_id) SELECT j.key, j.value, p.id "
            f"FROM json_each(%s) j LEFT JOIN {product} p ON p.sku = j.key",
            [payload],
        )


def _columns(connection, model, names) -> str:
    qn = connection.ops.quote_name
    meta = model._meta
    return f"{qn(meta.db_table)} ({', '.join(qn(meta.get_field(n).column) for n in names)})"
