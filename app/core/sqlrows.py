"""Plain rows to and from SQL: set-based inserts of tuples, rows as one JSON parameter.

The toolkit of the set-based write paths (the change pipeline's effects, the bulk writers,
the pipelines' SQL route): no model instances, no per-row compiler work.
"""

from __future__ import annotations

import datetime
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

from django.db import connections, models
from django.db.models.expressions import RawSQL

from . import encoding

CHUNK = 2000


@contextmanager
def hash_joins_off(cursor) -> Iterator[None]:
    """On PostgreSQL, no hash join for the statements run in the block: a large change set
    joined to a whole table is then read in the table's key order (a merge join over an
    index, or a nested loop of index probes), not hashed with it.

    A hash join of a large stage with the products, or with the stock levels, reads the
    whole table for each chunk of a write and works in batches once the hash outgrows
    ``work_mem`` (8 at 1,000,000 products), updating each batch's rows in the stage's
    order: every heap and index page is then visited once per batch. While the table fits
    in the shared buffers that costs little; at 1,000,000 products (312 MB of heap and
    eight indexes against 128 MB of buffers) each visit reads the page back and writes it
    out again. The map's product ``UPDATE`` took 53-58 s as a hash join, 26-28 s in key
    order; an upsert chunk's levels ``UPDATE`` hashed all 1,000,000 levels to change
    50,000 of them (benchmarks/RESULTS-pipeline.md). The setting is restored after the
    block; on an error the transaction (or savepoint) rolls it back."""
    with setting(cursor, "enable_hashjoin", "off"):
        yield


@contextmanager
def setting(cursor, name: str, value: str) -> Iterator[None]:
    """On PostgreSQL, the setting ``name`` at ``value`` for the statements run in the
    block (``set_config``, local to the transaction, and back to what it was after it; an
    error rolls it back with the transaction or savepoint). Elsewhere nothing."""
    if cursor.db.vendor != "postgresql":
        yield
        return
    cursor.execute("SELECT current_setting(%s), set_config(%s, %s, true)", [name, name, value])
    before = cursor.fetchone()[0]
    yield
    cursor.execute("SELECT set_config(%s, %s, true)", [name, before])


def insert_rows(
    model: type[models.Model],
    columns: Sequence[str],
    rows: list[tuple],
    *,
    using: str,
    returning: Sequence[str] = (),
) -> list[tuple]:
    """Set-based ``INSERT`` of plain tuples: no model instances, no per-row compiler work.

    Values are what the driver would bind (JSON columns as JSON text); datetimes are
    adapted for the backend once per distinct value (a batch shares one). Each chunk of
    rows travels as one JSON parameter (``json_rows``). ``returning``: columns of the new
    rows to return, in no particular order (SQLite 3.35+ and PostgreSQL).
    """
    if not rows:
        return []
    connection = connections[using]
    qn = connection.ops.quote_name
    meta = model._meta
    fields = [meta.get_field(name) for name in columns]
    adapt = [i for i, f in enumerate(fields) if isinstance(f, models.DateTimeField)]
    cache: dict[Any, Any] = {}
    if adapt:
        for row in rows:
            for i in adapt:
                if row[i] not in cache:
                    cache[row[i]] = _json_scalar(f_adapt(connection, row[i]))
    table = qn(meta.db_table)
    names = ", ".join(qn(f.column) for f in fields)
    source = json_rows_sql(connection, fields)
    sql = f"INSERT INTO {table} ({names}) SELECT * FROM {source}"
    if returning:
        sql += " RETURNING " + ", ".join(qn(meta.get_field(n).column) for n in returning)
    inserted: list[tuple] = []
    with connection.cursor() as cursor:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            if adapt:
                adapted = []
                for row in chunk:
                    row = list(row)
                    for i in adapt:
                        row[i] = cache[row[i]]
                    adapted.append(row)
                chunk = adapted
            cursor.execute(sql, [json_rows(chunk)])
            if returning:
                inserted.extend(cursor.fetchall())
    return inserted


def f_adapt(connection, value: Any) -> Any:
    return connection.ops.adapt_datetimefield_value(value)


def json_rows(rows: Sequence[Sequence[Any]]) -> str:
    """Rows (as arrays) in one JSON text: one parameter for a whole chunk, encoded in C, so
    a statement stays short (and cached) however many rows it carries."""
    return encoding.dumps(rows, default=_json_scalar)


def _json_scalar(value: Any) -> Any:
    """Values JSON has no type for, as the text the database parses back exactly."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    raise TypeError(f"cannot send {type(value).__name__} as a JSON row value")


def json_rows_sql(
    connection, fields: Sequence[models.Field], names: Sequence[str] = (), alias: str = "v"
) -> str:
    """A ``FROM`` item reading a ``json_rows`` parameter back as typed columns
    (named ``names`` if given). PostgreSQL casts each value to its column's type (text for
    strings: an over-long one then fails on write, as with ``save()``, not truncated);
    SQLite's column affinity converts them as it converts bound values."""
    aliases = [f" AS {connection.ops.quote_name(n)}" for n in names] or [""] * len(fields)
    if connection.vendor == "postgresql":
        columns = []
        for i, f in enumerate(fields):
            cast = f.cast_db_type(connection)
            cast = "text" if cast.startswith(("varchar", "char")) else cast
            columns.append(f"(r->>{i})::{cast}{aliases[i]}")
        return f"(SELECT {', '.join(columns)} FROM jsonb_array_elements(%s::jsonb) AS r) AS {alias}"
    columns = [f"json_extract(value, '$[{i}]'){aliases[i]}" for i in range(len(fields))]
    return f"(SELECT {', '.join(columns)} FROM json_each(%s)) AS {alias}"


def json_in(connection, sql_type: str = "text") -> str:
    """The test ``<column> {json_in}`` of whether a column's value is one of the items of a
    JSON array parameter (of ``sql_type`` on PostgreSQL): a long list as one parameter."""
    if connection.vendor == "postgresql":
        return f"= ANY(ARRAY({_json_items(connection, sql_type)}))"
    return f"IN ({_json_items(connection, sql_type)})"


def json_list(values: Sequence[Any], *, using: str, sql_type: str = "text") -> RawSQL:
    """``values`` as a subquery for an ORM ``__in`` filter (``pk__in=json_list(ids, ...)``):
    one JSON parameter, none of the per-item preparation a Python list gets."""
    connection = connections[using]
    # fixed SQL text; the values travel as a bound parameter
    return RawSQL(_json_items(connection, sql_type), (json_rows(values),))  # noqa: S611


def _json_items(connection, sql_type: str) -> str:
    if connection.vendor == "postgresql":
        return f"SELECT (jsonb_array_elements_text(%s::jsonb))::{sql_type}"
    return "SELECT value FROM json_each(%s)"


def column_converter(
    connection, model: type[models.Model], attname: str
) -> Callable[[Any], Any] | None:
    """What the ORM does to a column's value read on ``connection`` (``None``: nothing),
    for rows read with raw SQL."""
    field_ = model._meta.get_field(attname)
    col = field_.get_col(model._meta.db_table)
    funcs = connection.ops.get_db_converters(col) + col.get_db_converters(connection)
    if not funcs:
        return None

    def convert(value: Any) -> Any:
        for func in funcs:
            value = func(value, col, connection)
        return value

    return convert
