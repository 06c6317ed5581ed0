"""Steps written in SQL, set-based: the map steps (``set_prices``, ``set_stock``,
``adjust_stock``), ``adjust_prices`` and ``delete_products``.

The object route (``StepUnit.save``) builds a ``Product`` per row so that every receiver
sees each save. When no receiver needs instances (``adapters.rows_suffice``: only the
project's signal adapters listen) and the run is not a dry run (whose per-field diff is
built from instances), a SKU -> value map is written without them: it is staged in a
temporary table with each product's old value, checked (unknown SKU, stock out of range:
nothing is written then), and applied with one ``UPDATE ... FROM``. The write is then
described as a ``StagedChanges`` change set over the staged table, and the change
pipeline's effects (history and ledger, webhook events, alerts, cache) consume it as they
consume ``save()``'s rows, set-based.

``adjust_prices`` stages the products it selects (locked, with their prices), computes
their new prices chunk by chunk in Python (the step's own rounding, so both routes agree
to the cent) into the stage, and applies them the same way. ``delete_products`` stages
and locks its SKUs, then deletes chunk by chunk with ``app.models.deletes`` (the
adapters' bulk forms, one statement per related table) instead of Django's ``delete()``,
which sends the signals per object. The identity test (tests/pipelines/test_identity.py)
holds both routes to one ``save()``/``delete()`` per product.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.db import connections, models
from django.utils import timezone

from ..core import encoding
from ..core.sqlrows import column_converter, json_rows, json_rows_sql
from ..models import MAX_STOCK, Product
from ..tracking import adapters
from ..tracking.batch import record_set
from ..tracking.changes import StagedChanges
from .base import Select, stock_adjustment_error
from .writer import CHUNK, MAX_LISTED, MAX_REPORTED, NARROW_ATTNAMES, StepUnit, converted, from_row

STAGE = "stockpipe_stage"
# The staged rows with their products, in the stage's order: CROSS JOIN makes SQLite walk
# the stage (by ``ord``) and fetch each product by primary key, so nothing is sorted.
_ROWS = "FROM " + STAGE + " s CROSS JOIN {product} p WHERE p.id = s.product_id"
_ORD = models.IntegerField()


def applies(unit: StepUnit, *, deleting: bool = False) -> bool:
    """Whether ``unit``'s step may take this route (else the object route); ``deleting``
    for ``delete_products``, whose signals are the delete ones."""
    # Previews and runs checked against one read their products through the object route,
    # which digests them (``StepUnit._locked``).
    return (
        not unit.state.dry_run
        and unit.state.hasher is None
        and adapters.rows_suffice(deleting=deleting)
    )


def _target(unit: StepUnit, field: str) -> tuple[Any, bool, str, str]:
    """The connection (inside the run's transaction), whether it is PostgreSQL, the
    product table and ``field``'s column, quoted."""
    connection = connections[unit.using]
    if not connection.in_atomic_block:  # the stage lives as long as the run's transaction
        raise RuntimeError("The SQL route writes inside the pipeline run's transaction.")
    qn = connection.ops.quote_name
    column = qn(Product._meta.get_field(field).column)
    return connection, connection.vendor == "postgresql", qn(Product._meta.db_table), column


def write_map(
    unit: StepUnit, field: str, values: dict[str, Any], *, key: str, add: bool = False
) -> None:
    """Set ``field`` (``price`` or ``stock``) of each SKU to its value, or add it (``add``).

    ``key`` is the step's spec field, for error locations.
    """
    connection, pg, product, column = _target(unit, field)
    with connection.cursor() as cursor:
        _stage(cursor, pg, values, product, column)
        unknown = _unknown_chunk(cursor)
        if unknown:
            raise unit.failure([((key, sku), f"unknown SKU {sku!r}") for sku in unknown[1]])
        if field == "stock" and add:
            cursor.execute(
                f"SELECT s.sku, p.stock, s.value {_ROWS.format(product=product)} "  # numeric
                f"AND (p.stock + s.value < 0 OR p.stock + s.value > {MAX_STOCK}) "
                f"ORDER BY s.ord LIMIT {MAX_REPORTED}"
            )
            bad = cursor.fetchall()
            if bad:
                raise unit.failure(
                    [((key, sku), stock_adjustment_error(sku, s, int(d))) for sku, s, d in bad]
                )
        _apply(unit, cursor, field, staged=len(values), add=add)
    unit.advance(len(values))


def write_selected(
    unit: StepUnit,
    field: str,
    select: Select,
    compute: Callable[[list[tuple[str, Any]]], list[Any]],
) -> None:
    """Set ``field`` of the products ``select`` picks to what ``compute`` makes of their
    current values: given ``(sku, value)`` pairs, a chunk at a time in the object route's
    order (the SKUs as listed, else primary-key order), it returns their new values or
    raises the step's failure. An unknown listed SKU fails the step at its chunk."""
    connection, pg, product, column = _target(unit, field)
    convert = column_converter(connection, Product, field) or (lambda value: value)
    write_back = (
        f"UPDATE {STAGE} SET value = v.value FROM "
        f"{json_rows_sql(connection, [_ORD, Product._meta.get_field(field)], ['ord', 'value'])}"
        f" WHERE {STAGE}.ord = v.ord"
    )
    with connection.cursor() as cursor:
        if select.skus is not None:
            listed = dict.fromkeys(select.skus, 0)
            _stage(cursor, pg, listed, product, column)
            staged, unknown = len(listed), _unknown_chunk(cursor)
            position = {sku: i for i, sku in enumerate(select.skus)}
        else:
            lookup = {} if select.all else {"sku__startswith": select.sku_prefix}
            staged, unknown = _stage_selected(cursor, pg, unit.using, field, lookup), None
        for number, start in enumerate(range(1, staged + 1, CHUNK)):
            if unknown is not None and unknown[0] == number:
                raise unit.failure(
                    [
                        (("select", "skus", position[sku]), f"unknown SKU {sku!r}")
                        for sku in unknown[1]
                    ]
                )
            cursor.execute(
                f"SELECT ord, sku, old FROM {STAGE} WHERE ord BETWEEN %s AND %s ORDER BY ord",
                [start, start + CHUNK - 1],
            )
            rows = cursor.fetchall()
            new = compute([(sku, convert(old)) for _, sku, old in rows])
            cursor.execute(
                write_back,
                [json_rows([[ord_, value] for (ord_, _, _), value in zip(rows, new, strict=True)])],
            )
        _apply(unit, cursor, field, staged=staged)
    unit.advance(staged)


def delete_skus(unit: StepUnit, skus: Sequence[str], *, key: str) -> None:
    """Delete the products of ``skus``: staged and locked together, then deleted a chunk at
    a time (as the object route hands them to Django's ``delete()``) by
    ``app.models.deletes``. An unknown SKU fails the step, located by its (last) index."""
    connection, pg, product, column = _target(unit, "id")
    listed = dict.fromkeys(skus, 0)
    qn = connection.ops.quote_name
    # The deletion audit is built by the database from the rows (``deletes.delete_rows``):
    # what Python needs of each product is what its change row carries, no timestamps.
    columns = ", ".join(f"p.{qn(Product._meta.get_field(name).column)}" for name in NARROW_ATTNAMES)
    with connection.cursor() as cursor:
        _stage(cursor, pg, listed, product, column)
        unknown = _unknown_chunk(cursor)
        if unknown:
            position = {sku: i for i, sku in enumerate(skus)}
            raise unit.failure(
                [((key, position[sku]), f"unknown SKU {sku!r}") for sku in unknown[1]]
            )
        for start in range(1, len(listed) + 1, CHUNK):
            cursor.execute(
                f"SELECT {columns} {_ROWS.format(product=product)} "
                "AND s.ord BETWEEN %s AND %s ORDER BY s.ord",
                [start, start + CHUNK - 1],
            )
            rows = converted(connection, NARROW_ATTNAMES, cursor.fetchall())
            unit.delete(
                [from_row(unit.using, NARROW_ATTNAMES, row) for row in rows], set_based=True
            )
            unit.advance(len(rows))


def _apply(unit: StepUnit, cursor, field: str, *, staged: int, add: bool = False) -> None:
    """Write the stage's values to ``field`` of its products (``add``: add them), list the
    price changes, count, and hand the change set to the effects. ``staged``: how many
    rows the stage holds."""
    connection = cursor.db
    product = connection.ops.quote_name(Product._meta.db_table)
    column = connection.ops.quote_name(Product._meta.get_field(field).column)
    value = "CAST(s.value AS INTEGER)" if field == "stock" else "s.value"

    def expressions(table: str) -> tuple[str, str]:
        """The new value, and whether the row changes, for the product row ``table``."""
        current = f"{table}.{column}"
        if add:
            return f"{current} + {value}", f"{value} <> 0"
        return value, f"{current} <> {value}"

    _, changed = expressions("p")
    state = unit.state
    if field == "price":
        room = MAX_LISTED - len(state.price_changes)
        if room > 0:
            cursor.execute(
                f"SELECT s.sku, p.price, s.value {_ROWS.format(product=product)} AND {changed} "
                f"ORDER BY s.ord LIMIT {room}"
            )
            convert = _price_converter(connection)
            for sku, old, new in cursor.fetchall():
                state.price_changes.append(
                    {
                        "step": unit.index,
                        "sku": sku,
                        "old": str(convert(old)),
                        "new": str(convert(new)),
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
        unit.counts.unchanged += staged - updated
        if field == "price":
            state.price_change_count += updated

    unit.tracked(write)


def _unknown_chunk(cursor) -> tuple[int, list[str]] | None:
    """The first chunk of the stage (``CHUNK`` rows by ``ord``, as the object route locks
    them) holding unknown SKUs: its number and those SKUs (the first ``MAX_REPORTED``)."""
    cursor.execute(f"SELECT MIN(ord) FROM {STAGE} WHERE product_id IS NULL")
    first = cursor.fetchone()[0]
    if first is None:
        return None
    number = (first - 1) // CHUNK
    cursor.execute(
        f"SELECT sku FROM {STAGE} WHERE product_id IS NULL AND ord BETWEEN %s AND %s "
        f"ORDER BY ord LIMIT {MAX_REPORTED}",
        [number * CHUNK + 1, (number + 1) * CHUNK],
    )
    return number, [row[0] for row in cursor.fetchall()]


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
    _create(cursor, pg)
    if pg:
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
        cursor.execute(  # ord: the rowid, given in the members' order
            f"INSERT INTO {STAGE} (sku, value, product_id, old) SELECT j.key, j.value, p.id, "
            f"p.{column} "
            f"FROM json_each(%s) j LEFT JOIN {product} p ON p.sku = j.key",
            [payload],
        )


def _stage_selected(cursor, pg: bool, using: str, field: str, lookup: dict[str, Any]) -> int:
    """Stage the products matching ``lookup`` (a queryset filter, so it means what it means
    to the object route), locked in primary-key order and numbered in that order, with
    their ``field`` as old value (and as value, until computed). Returns how many."""
    _create(cursor, pg)
    selected = (
        Product._base_manager.db_manager(using)
        .select_for_update()  # nothing on SQLite (the transaction holds the write lock)
        .filter(**lookup)
        .order_by("pk")
        .values_list("id", "sku", field)
    )
    sql, params = selected.query.sql_with_params()
    column = cursor.db.ops.quote_name(Product._meta.get_field(field).column)
    cursor.execute(
        f"INSERT INTO {STAGE} (ord, sku, value, product_id, old) SELECT row_number() OVER "
        f"(ORDER BY l.id), l.sku, l.{column}, l.id, l.{column} FROM ({sql}) l",
        params,
    )
    staged = cursor.rowcount
    if pg:
        cursor.execute(f"ANALYZE {STAGE}")
    return staged


def _create(cursor, pg: bool) -> None:
    """The (empty) stage of this connection. On PostgreSQL it is dropped when the
    transaction ends (see ``_stage``); later steps of the same run reuse it."""
    if pg:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ord integer PRIMARY KEY, "
            "sku text NOT NULL, value numeric NOT NULL, product_id bigint, old numeric) "
            "ON COMMIT DROP"
        )
        cursor.execute(f"TRUNCATE {STAGE}")
    else:
        cursor.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {STAGE} (ord INTEGER PRIMARY KEY, "
            "sku TEXT NOT NULL, value NUMERIC NOT NULL, product_id INTEGER, old NUMERIC)"
        )
        cursor.execute(f"DELETE FROM {STAGE}")
