"""Map steps (``set_prices``, ``set_stock``, ``adjust_stock``) written in SQL, set-based.

The object route (``StepUnit.save``) builds a ``Product`` per row so that every receiver
sees each save. When no receiver needs instances (``adapters.rows_suffice``: only the
project's signal adapters listen) and the run is not a dry run (whose per-field diff is
built from instances), a SKU -> value map is written without them: it is staged in a
temporary table with each product's old value, checked (unknown SKU, stock out of range:
nothing is written then), and applied with one ``UPDATE ... FROM``. The write is then
described as a ``StagedChanges`` change set over the staged table, and the change
pipeline's effects (history and ledger, webhook events, alerts, cache) consume it as they
consume ``save()``'s rows, set-based. The identity test (tests/pipelines/test_identity.py)
holds both routes to one ``save()`` per product.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.utils import timezone

from ..core import encoding
from ..core.sqlrows import column_converter
from ..models import MAX_STOCK, Product
from ..tracking import adapters
from ..tracking.batch import record_set
from ..tracking.changes import StagedChanges
from .base import stock_adjustment_error
from .writer import MAX_LISTED, MAX_REPORTED, StepUnit

STAGE = "stockpipe_stage"


def applies(unit: StepUnit) -> bool:
    """Whether ``unit``'s map step may take this route (else the object route)."""
    # Previews and runs checked against one read their products through the object route,
    # which digests them (``StepUnit._locked``).
    return not unit.state.dry_run and unit.state.hasher is None and adapters.rows_suffice()


def write_map(
    unit: StepUnit, field: str, values: dict[str, Any], *, key: str, add: bool = False
) -> None:
    """Set ``field`` (``price`` or ``stock``) of each SKU to its value, or add it (``add``).

    ``key`` is the step's spec field, for error locations.
    """
    connection = connections[unit.using]
    if not connection.in_atomic_block:  # the stage lives as long as the run's transaction
        raise RuntimeError("The SQL route writes inside the pipeline run's transaction.")
    pg = connection.vendor == "postgresql"
    qn = connection.ops.quote_name
    product = qn(Product._meta.db_table)

    value = "CAST(s.value AS INTEGER)" if field == "stock" else "s.value"
    column = qn(Product._meta.get_field(field).column)

    def expressions(table: str) -> tuple[str, str]:
        """The new value, and whether the row changes, for the product row ``table``."""
        current = f"{table}.{column}"
        if add:
            return f"{current} + {value}", f"{value} <> 0"
        return value, f"{current} <> {value}"

    _, changed = expressions("p")
    # The staged rows with their products, in the map's order: CROSS JOIN makes SQLite
    # walk the stage (by ``ord``) and fetch each product by primary key, so nothing is sorted.
    rows = f"FROM {STAGE} s CROSS JOIN {product} p WHERE p.id = s.product_id"

    with connection.cursor() as cursor:
        _stage(cursor, pg, values, product, column)
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

        def write() -> None:
            written_at = timezone.now()
            set_to, changes = expressions(product)
            cursor.execute(
                f"UPDATE {product} SET {column} = {set_to}, updated_at = %s FROM {STAGE} s "
                f"WHERE {product}.id = s.product_id AND {changes}",
                [connection.ops.adapt_datetimefield_value(written_at)],
            )
            updated = cursor.rowcount
            if updated and adapters.saves_tracked():
                record_set(
                    StagedChanges(
                        _changed_rows(connection, field, product),
                        field=field,
                        count=updated,
                        using=unit.using,
                        at=written_at,
                    )
                )
            unit.counts.updated += updated
            unit.counts.unchanged += len(values) - updated
            if field == "price":
                state.price_change_count += updated

        unit.tracked(write)
    unit.advance(len(values))


def _changed_rows(connection, field: str, product: str) -> str:
    """The change set's rows (``changes.COLUMNS``) after the write: each staged product
    whose ``field`` now differs from the old value staged with it, in the map's order."""
    column = connection.ops.quote_name(Product._meta.get_field(field).column)
    old = "CAST(s.old AS INTEGER)" if field == "stock" else "s.old"
    values = {"price": "p.price", "stock": "p.stock", field: old}
    return (
        "SELECT s.ord AS ord, p.id AS pk, 'updated' AS kind, p.sku AS sku, p.sku AS old_sku, "
        "p.name AS name, p.name AS old_name, p.price AS price, "
        f"{values['price']} AS old_price, p.stock AS stock, {values['stock']} AS old_stock, "
        "p.low_stock_threshold AS threshold, p.low_stock_threshold AS old_threshold "
        f"FROM {STAGE} s CROSS JOIN {product} p WHERE p.id = s.product_id "
        f"AND p.{column} <> {old}"
    )


def _price_converter(connection):
    """Prices read with raw SQL, converted as the ORM would (a Decimal with two places)."""
    return column_converter(connection, Product, "price") or (lambda value: value)


def _stage(cursor, pg: bool, values: dict[str, Any], product: str, column: str) -> None:
    """The map as rows ``(ord, sku, value, product_id, old)`` of a temporary table of this
    connection; ``product_id`` is null for an unknown SKU, ``old`` the product's value of
    ``column`` before the write. The products are locked (in primary-key order, as by
    every other writer) before their ids and values are taken.

    On PostgreSQL the table is dropped when the transaction ends (``ON COMMIT DROP``; a
    rollback drops it too): behind a transaction pooler (PgBouncer) the server connection
    goes to other clients after the transaction, and must not carry the stage along. Later
    map steps of the same run reuse it (``IF NOT EXISTS``, then ``TRUNCATE``)."""
    payload = encoding.dumps(values, default=str)  # in the map's order; Decimals exact
    if pg:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ord integer PRIMARY KEY, "
            "sku text NOT NULL, value numeric NOT NULL, product_id bigint, old numeric) "
            "ON COMMIT DROP"
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
            f"UPDATE {STAGE} SET product_id = l.id, old = l.old FROM (SELECT p.id, p.sku, "
            f"p.{column} AS old FROM {product} p "
            f"WHERE p.sku IN (SELECT sku FROM {STAGE}) ORDER BY p.id FOR UPDATE) l "
            f"WHERE l.sku = {STAGE}.sku"
        )
    else:  # the transaction holds SQLite's write lock already (BEGIN IMMEDIATE)
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ord INTEGER PRIMARY KEY, "
            "sku TEXT NOT NULL, value NUMERIC NOT NULL, product_id INTEGER, old NUMERIC)"
        )
        cursor.execute(f"DELETE FROM {STAGE}")
        cursor.execute(  # ord: the rowid, given in the members' order
            f"INSERT INTO {STAGE} (sku, value, product_id, old) SELECT j.key, j.value, p.id, "
            f"p.{column} "
            f"FROM json_each(%s) j LEFT JOIN {product} p ON p.sku = j.key",
            [payload],
        )
