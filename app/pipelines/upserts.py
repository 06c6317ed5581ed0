"""``upsert_products`` written in SQL, set-based (the route ``staged.applies`` chooses).

The object route builds a ``Product`` per row (an instance for each existing SKU, one for
each new one) so that every receiver sees each save. When only the project's receivers
listen, a chunk of validated rows (``RowValues`` tuples, SKUs distinct) is staged instead
in a temporary table (PostgreSQL: one array literal per column; SQLite: one JSON
parameter), each SKU resolved to its product (locked, in primary-key order, with its old
values), the stock totals checked against the other locations' levels (nothing is
written when one fails), and applied with one ``UPDATE`` and one ``INSERT``. The change set (``StagedChanges`` over ``CHANGED_ROWS``: rows
``created`` and ``updated`` with their old and new values, read from the stage alone) goes
to the change pipeline's effects (history, ledger, stock levels, webhooks, alerts, cache),
set-based, as the map steps' does.

On PostgreSQL the stage is dropped when the transaction ends (``ON COMMIT DROP``): behind
a transaction pooler (PgBouncer) the server connection goes to other clients after it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..core import encoding, jobs
from ..core.sqlrows import column_converter
from ..models import Location, PriceHistory, Product, StockLevel, StockMovement
from ..tracking import adapters
from ..tracking.batch import record_set
from ..tracking.changes import CREATED, STOCK_UPDATED, UPDATED, StagedChanges
from ..tracking.levels import default_location_id
from .rows import RowValues
from .writer import MAX_LISTED, MAX_REPORTED, StepUnit, created_meanwhile

logger = logging.getLogger(__name__)

UPSERT_STAGE = "stockpipe_upsert"
# Rows staged per statement. Each chunk's statements join the stage to whole tables (on
# PostgreSQL the product UPDATE and the levels effect hash them) and the stage is analyzed
# once per chunk, so fewer, larger chunks are cheaper: 50,000 against 10,000 took a
# 100,000-row PostgreSQL upsert from about 0.66x to 0.81x of the benchmark's limit
# (SQLite: no difference). 100,000 (the benchmark's upsert in one chunk, as the limit's one
# statement) was not faster at 100,000 rows in the noise and read 0.60x at 1,000,000
# (0.84-0.89x at 50,000; a stage of 100,000 rows likely outgrows ``work_mem``'s hash), so
# 50,000 stays. Memory: a chunk is held as the stage's text (``StageRows``); a
# 1,000,000-row CSV upsert peaked at 129 MB with 100,000-row chunks (123-126 MB with 50,000
# rows held as ``RowValues``; target 150 MB at 10,000,000 rows).
STAGE_CHUNK = 50_000
# Rows taken into a chunk's text at a time (``StageRows.add``; a mapped feed's come one by one).
STAGE_ADD = 1_000
# The fields an upsert sets (stock and threshold where given).
UPSERTED = ("name", "price", "stock", "low_stock_threshold")
# The optional counts: (product column, stage column, index in ``RowValues``; ``None``
# there: not given, kept).
COUNTS = (("stock", "s.stock", 3), ("low_stock_threshold", "s.threshold", 4))

# PostgreSQL: a table this run grew by at least ANALYZE_MIN_ROWS rows and by more than
# ANALYZE_SHARE of what its statistics say it held (or by ANALYZE_ALWAYS_ROWS) is analyzed
# by a background task (``analyze_tables``) enqueued when the run commits. Until autovacuum
# gets to it the planner would go on planning for the old size (an export after a
# 700,000-row upsert took minutes with a stale plan); the run itself does not wait for it
# (0.3 s after a 100,000-row upsert).
ANALYZE_MIN_ROWS = 10_000
ANALYZE_SHARE = 0.2
ANALYZE_ALWAYS_ROWS = 100_000
ANALYZED = (Product, PriceHistory, StockMovement)
ANALYZE_LOCK_TIMEOUT = "2s"


class StageRows:
    """A chunk of rows for the stage (distinct SKUs), kept as the text the stage's
    ``INSERT`` reads, added a block at a time: PostgreSQL's array literals' elements per
    column, SQLite's JSON arrays. A row's text takes a fraction of the memory of its
    Python values (a ``RowValues`` tuple with its strings and ``Decimal``, and a dict
    entry), so a chunk of ``STAGE_CHUNK`` rows does not hold them all (the block being
    read is the only one alive)."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.count = 0
        self.skus: set[str] = set()  # for a repeated SKU (a new chunk)
        # Rows giving a stock, a threshold (``COUNTS``).
        self.given = [0] * len(COUNTS)
        self._parts: list[list[str]] = [[] for _ in range(5)] if pg else [[]]

    def __len__(self) -> int:
        return self.count

    def __contains__(self, sku: str) -> bool:
        return sku in self.skus

    def add(self, rows: Sequence[RowValues]) -> None:
        """Add ``rows`` (their SKUs not in the chunk yet, nor repeated among them)."""
        if not rows:
            return
        columns = tuple(zip(*rows, strict=True))
        self.count += len(rows)
        self.skus.update(columns[0])
        for i, (_, _, index) in enumerate(COUNTS):
            self.given[i] += len(rows) - columns[index].count(None)
        if self.pg:
            for parts, column, text in zip(self._parts, columns, _TEXT_COLUMNS, strict=True):
                parts.append(array_elements(column, text=text))
        else:
            # Tuples are JSON arrays; a price is its text, as ``str`` gives it.
            self._parts[0].append(encoding.dumps(rows, default=str)[1:-1])

    def payload(self) -> list[str]:
        """The stage's parameters: an array literal per column (PostgreSQL), or one JSON
        array of the rows (SQLite). Taken once: the pieces are let go as they are joined."""
        opening, closing = "{}" if self.pg else "[]"
        params = []
        for parts in self._parts:
            params.append(opening + ",".join(parts) + closing)
            parts.clear()
        self.skus = set()
        return params


# The columns of ``RowValues`` whose elements are quoted text in an array literal.
_TEXT_COLUMNS = (True, True, False, False, False)


def write_rows(unit: StepUnit, rows: StageRows, *, key: str) -> None:
    """Create or update the products of the chunk ``rows`` (distinct SKUs), as ``save()``
    per row would: name and price always, stock and threshold where given (``None``: kept;
    a new product gets 0 and the default threshold). ``key``: the step's source field, for
    errors. The totals are checked for every chunk, once
    ``_stage`` holds its products' locks: stock moved to another location while an earlier
    chunk was written is seen."""
    connection = connections[unit.using]
    if not connection.in_atomic_block:  # the stage lives as long as the run's transaction
        raise RuntimeError("The SQL route writes inside the pipeline run's transaction.")
    pg = connection.vendor == "postgresql"
    qn = connection.ops.quote_name
    product = qn(Product._meta.db_table)
    # The UPDATE sets stock and threshold only where the chunk gives them (a feed without
    # a threshold column leaves its column and the indexes that read it alone).
    values = [("name", "s.name"), ("price", "s.price")]
    for (column, staged, _), given in zip(COUNTS, rows.given, strict=True):
        if given:
            values.append(
                (
                    column,
                    staged if given == len(rows) else f"COALESCE({staged}, {product}.{column})",
                )
            )
    sets = ", ".join(f"{column} = {value}" for column, value in values)
    differs = " OR ".join(f"{product}.{column} <> {value}" for column, value in values)
    with connection.cursor() as cursor:
        resolved = _stage(cursor, pg, rows, product)
        _check_totals(unit, cursor, key)
        price_changes, stock_updated = _stage_counts(cursor)
        _list_price_changes(unit, cursor, price_changes)

        def write() -> None:
            at = timezone.now()
            stamp = connection.ops.adapt_datetimefield_value(at)
            cursor.execute(
                f"UPDATE {product} SET {sets}, updated_at = %s "
                f"FROM {UPSERT_STAGE} s WHERE {product}.id = s.product_id AND ({differs})",
                [stamp],
            )
            updated = cursor.rowcount
            threshold = Product._meta.get_field("low_stock_threshold").get_default()
            insert = (
                f"INSERT INTO {product} (sku, name, price, stock, low_stock_threshold, "
                "created_at, updated_at) SELECT s.sku, s.name, s.price, COALESCE(s.stock, 0), "
                f"COALESCE(s.threshold, %s), %s, %s FROM {UPSERT_STAGE} s "
                "WHERE s.product_id IS NULL ORDER BY s.ord ON CONFLICT (sku) DO NOTHING"
            )
            if pg:  # the new ids into the stage in the same statement
                cursor.execute(
                    f"WITH n AS ({insert} RETURNING id, sku, stock, low_stock_threshold) "
                    f"UPDATE {UPSERT_STAGE} SET product_id = n.id, created = 1, "
                    "stock = n.stock, threshold = n.low_stock_threshold "
                    f"FROM n WHERE {UPSERT_STAGE}.sku = n.sku",
                    [threshold, stamp, stamp],
                )
                created = cursor.rowcount
                if created < len(rows) - resolved:
                    _created_meanwhile(unit, cursor, key)
            else:
                cursor.execute(insert, [threshold, stamp, stamp])
                created = cursor.rowcount
                if created:
                    cursor.execute(
                        f"UPDATE {UPSERT_STAGE} SET created = 1, product_id = (SELECT p.id "
                        f"FROM {product} p WHERE p.sku = {UPSERT_STAGE}.sku), "
                        "stock = COALESCE(stock, 0), threshold = COALESCE(threshold, %s) "
                        "WHERE product_id IS NULL",
                        [threshold],
                    )
            if (updated or created) and adapters.saves_tracked():
                record_set(
                    StagedChanges(
                        CHANGED_ROWS,
                        fields=UPSERTED,
                        count=updated + created,
                        using=unit.using,
                        at=at,
                        counts={STOCK_UPDATED: stock_updated},
                    )
                )
            unit.counts.updated += updated
            unit.counts.created += created
            unit.counts.unchanged += len(rows) - updated - created

        unit.tracked(write)
    unit.advance(len(rows))


def _created_meanwhile(unit: StepUnit, cursor, key: str) -> None:
    """Fail the step naming the new SKUs of the stage another transaction created (and
    committed) after the stage was resolved: the ``INSERT`` left them out (``ON
    CONFLICT DO NOTHING``), and the run rolls back (PostgreSQL; on SQLite the run's
    transaction holds the database's write lock from the start)."""
    cursor.execute(
        f"SELECT s.sku FROM {UPSERT_STAGE} s WHERE s.product_id IS NULL ORDER BY s.ord "
        f"LIMIT {MAX_REPORTED}"
    )
    raise unit.failure([((key, sku), created_meanwhile(sku)) for (sku,) in cursor.fetchall()])


def _stage(cursor, pg: bool, rows: StageRows, product: str) -> int:
    """The rows as ``(ord, sku, name, price, stock, threshold)`` of a temporary table of
    this connection, each with its product's id and old values (null for a new SKU); the
    products are locked (in primary-key order, as by every other writer) first. Returns
    how many rows name an existing product (PostgreSQL; 0 on SQLite)."""
    columns = (
        "ord integer PRIMARY KEY, sku text NOT NULL, name text NOT NULL, price numeric NOT NULL, "
        "stock bigint, threshold bigint, product_id bigint, created integer NOT NULL DEFAULT 0, "
        "old_name text, old_price numeric, old_stock bigint, old_threshold bigint"
    )
    if pg:
        cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {UPSERT_STAGE} ({columns}) ON COMMIT DROP")
        cursor.execute(f"TRUNCATE {UPSERT_STAGE}")
        # One INSERT: each row with its locked product (locked first, in primary-key
        # order: a product renamed or deleted meanwhile is not taken by its old SKU), so
        # every stage row is written once (was: inserted, then updated with its product).
        # The locking subquery probes the SKU index for the chunk's SKUs (a hash join on
        # the CTE, whatever its estimate); the stage is then analyzed for the statements
        # that join it. The rows travel as one array literal per column (the server
        # parses those in about half the time it takes to take a JSON array apart).
        cursor.execute(
            "WITH t AS MATERIALIZED (SELECT t.ord, t.sku, t.name, t.price, t.stock, t.threshold "
            "FROM unnest(%s::text[], %s::text[], %s::numeric[], %s::bigint[], %s::bigint[]) "
            "WITH ORDINALITY AS t(sku, name, price, stock, threshold, ord)), "
            f"i AS (INSERT INTO {UPSERT_STAGE} (ord, sku, name, price, stock, threshold, "
            "product_id, old_name, old_price, old_stock, old_threshold) SELECT t.ord, t.sku, "
            "t.name, t.price, t.stock, t.threshold, l.id, l.name, l.price, l.stock, "
            "l.low_stock_threshold FROM t LEFT JOIN (SELECT p.id, p.sku, p.name, p.price, "
            f"p.stock, p.low_stock_threshold FROM {product} p WHERE p.sku IN (SELECT sku FROM t) "
            "ORDER BY p.id FOR UPDATE) l ON l.sku = t.sku RETURNING product_id) "
            "SELECT COUNT(product_id) FROM i",
            rows.payload(),
        )
        resolved = cursor.fetchone()[0]
        cursor.execute(f"ANALYZE {UPSERT_STAGE}")
        return resolved
    # SQLite: the transaction holds the write lock already (BEGIN IMMEDIATE). The rows go
    # as one JSON parameter (``StageRows``). Each ``json_extract`` parses the row's text
    # again (most of the statement's time): a count no row of the chunk gives is staged as
    # NULL without one.
    counts = ", ".join(
        f"json_extract(j.value, '$[{index}]')" if given else "NULL"
        for (_, _, index), given in zip(COUNTS, rows.given, strict=True)
    )
    cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {UPSERT_STAGE} ({columns})")
    cursor.execute(f"DELETE FROM {UPSERT_STAGE}")
    cursor.execute(
        f"INSERT INTO {UPSERT_STAGE} (ord, sku, name, price, stock, threshold, product_id, "
        "old_name, old_price, old_stock, old_threshold) "
        # json_extract, not ->> (SQLite 3.38+): Django 5.2 supports SQLite 3.31.
        "SELECT j.key + 1, json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), "
        f"json_extract(j.value, '$[2]'), {counts}, "
        "p.id, p.name, p.price, p.stock, p.low_stock_threshold "
        f"FROM json_each(%s) j LEFT JOIN {product} p ON p.sku = json_extract(j.value, '$[0]')",
        rows.payload(),
    )
    return 0


def array_elements(values: Sequence[Any], *, text: bool = False) -> str:
    """The elements of a PostgreSQL array literal of ``values`` (``None``: NULL),
    comma-separated. ``text``: every element quoted, ``\\`` and ``"`` escaped, so any string
    (commas, braces, quotes, spaces, the word NULL) reads back unchanged; otherwise numbers
    (``int``, ``Decimal``) as written."""
    if text:
        try:  # the common case, no NULL and nothing to escape: one join
            body = '","'.join(values)
        except TypeError:  # a None
            body = None
        if body is not None and "\\" not in body and '"' not in body:
            return '"' + body + '"' if values else ""
        return ",".join(
            "NULL" if value is None else '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
            for value in values
        )
    return ",".join("NULL" if value is None else str(value) for value in values)


def _check_totals(unit: StepUnit, cursor, key: str) -> None:
    """``located.check_totals`` over the stage: a stock given for an existing product is a
    total at the default location, never below what its other locations hold.

    Checked for every chunk once its products are locked (stock moved elsewhere by another
    transaction meanwhile is seen), after a probe through the location index: while no
    other location holds stock at all (a single warehouse), no stock can be below it and
    the chunk's products are not looked up in the levels."""
    level = cursor.db.ops.quote_name(StockLevel._meta.db_table)
    location = cursor.db.ops.quote_name(Location._meta.db_table)
    default = default_location_id(unit.using)
    others = f"SELECT o.id FROM {location} o WHERE o.id <> %s"
    cursor.execute(
        f"SELECT 1 FROM {level} l WHERE l.location_id IN ({others}) AND l.quantity > 0 LIMIT 1",
        [default],
    )
    if cursor.fetchone() is None:
        return
    cursor.execute(
        f"SELECT s.sku, s.stock, e.held FROM {UPSERT_STAGE} s JOIN (SELECT l.product_id, "
        f"SUM(l.quantity) AS held FROM {level} l WHERE l.quantity > 0 AND l.location_id <> %s "
        f"AND l.product_id IN (SELECT product_id FROM {UPSERT_STAGE} WHERE stock IS NOT NULL) "
        "GROUP BY l.product_id) e ON e.product_id = s.product_id "
        f"WHERE s.stock IS NOT NULL AND s.stock < e.held ORDER BY s.ord LIMIT {MAX_REPORTED}",
        [default],
    )
    bad = cursor.fetchall()
    if bad:
        raise unit.failure(
            [
                (
                    (key, sku),
                    f"stock of {sku} would be {stock}, below the {held} units held "
                    "at locations other than the default one",
                )
                for sku, stock, held in bad
            ]
        )


def _stage_counts(cursor) -> tuple[int, int]:
    """How many products of the stage that exist already get a new price, and how many a
    new stock (one pass over the stage). The second is the change set's ``STOCK_UPDATED``
    count: with it the levels effect looks for missing levels among the created products
    alone (``app.tracking.levels``)."""
    cursor.execute(
        "SELECT COUNT(CASE WHEN s.old_price <> s.price THEN 1 END), "
        f"COUNT(CASE WHEN s.stock <> s.old_stock THEN 1 END) FROM {UPSERT_STAGE} s "
        "WHERE s.product_id IS NOT NULL"
    )
    prices, stocks = cursor.fetchone()
    return prices, stocks


def _list_price_changes(unit: StepUnit, cursor, count: int) -> None:
    """The run's list of price changes (the first ``MAX_LISTED``) and their ``count``."""
    state = unit.state
    room = MAX_LISTED - len(state.price_changes)
    state.price_change_count += count
    if room <= 0:
        return
    cursor.execute(
        f"SELECT s.sku, s.old_price, s.price FROM {UPSERT_STAGE} s WHERE s.product_id IS NOT "
        f"NULL AND s.old_price <> s.price ORDER BY s.ord LIMIT {room}"
    )
    convert = column_converter(cursor.db, Product, "price") or (lambda value: value)
    for sku, old, new in cursor.fetchall():
        state.price_changes.append(
            {"step": unit.index, "sku": sku, "old": str(convert(old)), "new": str(convert(new))}
        )


# The change set's rows (``changes.COLUMNS``) after the write, read from the stage alone:
# it holds each row's old values (locked when staged) and, once written, the new ones
# (a stock or threshold not given is the old one; a created row has its stock and
# threshold as inserted), so the effects, each reading the change set, do not join the
# products again. Each product created, and each whose values differ from the old ones,
# in input order; an unchanged row is left out as the ``UPDATE`` left it.
CHANGED_ROWS = (
    "SELECT s.ord AS ord, s.product_id AS pk, "
    f"CASE WHEN s.created = 1 THEN '{CREATED}' ELSE '{UPDATED}' END AS kind, "
    "s.sku AS sku, s.sku AS old_sku, s.name AS name, COALESCE(s.old_name, s.name) AS old_name, "
    "s.price AS price, COALESCE(s.old_price, s.price) AS old_price, "
    "COALESCE(s.stock, s.old_stock) AS stock, "
    "CASE WHEN s.created = 1 THEN 0 ELSE s.old_stock END AS old_stock, "
    "COALESCE(s.threshold, s.old_threshold) AS threshold, "
    "COALESCE(s.old_threshold, s.threshold) AS old_threshold "
    f"FROM {UPSERT_STAGE} s WHERE s.product_id IS NOT NULL AND (s.created = 1 OR "
    "s.name <> s.old_name OR s.price <> s.old_price OR s.stock <> s.old_stock OR "
    "s.threshold <> s.old_threshold)"
)


def table_ends(unit: StepUnit) -> list[int] | None:
    """The highest id of each table of ``ANALYZED`` (PostgreSQL; ``None`` elsewhere or in a
    dry run): taken before an upsert step, so that ``analyze_grown`` knows how many rows it
    added. (The transaction's own counters, ``pg_stat_xact_*``, also count the backend's
    earlier transactions until its statistics are flushed.)"""
    connection = connections[unit.using]
    if connection.vendor != "postgresql" or unit.state.dry_run:
        return None
    qn = connection.ops.quote_name
    ends = ", ".join(f"(SELECT MAX(id) FROM {qn(m._meta.db_table)})" for m in ANALYZED)
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {ends}")
        return [end or 0 for end in cursor.fetchone()]


def analyze_grown(unit: StepUnit, ends: list[int] | None) -> list[str]:
    """After an upsert step (either route), given ``table_ends`` from before it: the tables
    of ``ANALYZED`` it grew a lot (``ANALYZE_*``), for the ``analyze_tables`` task enqueued
    once the run commits (outside its transaction and locks, and off the run's clock);
    returns their names (empty: nothing to do)."""
    if ends is None:
        return []
    state = unit.state
    connection = connections[unit.using]
    names = [model._meta.db_table for model in ANALYZED]
    now = table_ends(unit) or ends
    with connection.cursor() as cursor:
        cursor.execute(  # the planner's row estimates (-1: never analyzed)
            "SELECT relname, reltuples FROM pg_class WHERE relname = ANY(%s) "
            "AND relkind IN ('r', 'p') AND pg_table_is_visible(oid)",
            [names],
        )
        estimates = dict(cursor.fetchall())
    grown = [
        name
        for name, before, after in zip(names, ends, now, strict=True)
        if (added := after - before) >= ANALYZE_MIN_ROWS
        and (added >= ANALYZE_ALWAYS_ROWS or added > ANALYZE_SHARE * max(estimates.get(name, 0), 0))
    ]
    pending = getattr(state, "analyze_after_commit", None)
    if pending is not None:  # a later upsert step of the same run: one ANALYZE per table
        pending.update(grown)
        return grown
    if grown:
        tables = set(grown)
        state.analyze_after_commit = tables  # type: ignore[attr-defined]
        task = jobs.task("analyze_tables")
        # robust: whatever it raises, the committed run is not relabelled as failed
        transaction.on_commit(
            lambda: task.enqueue(sorted(tables), unit.using), using=unit.using, robust=True
        )
    return grown


def analyze_tables(using: str, tables: Sequence[str]) -> None:
    """Fresh statistics for ``tables`` (the ``analyze_tables`` task, after a run that grew
    them); a failure is logged, never raised (the run has committed, and autovacuum would
    analyze them later anyway). Bounded by a short ``lock_timeout`` (a table locked by a
    DDL or a VACUUM is left to autovacuum), and partitioned parents are skipped: analyzing
    one samples every partition."""
    connection = connections[using]
    qn = connection.ops.quote_name
    try:
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{ANALYZE_LOCK_TIMEOUT}'")
            cursor.execute(
                "SELECT relname FROM pg_class WHERE relname = ANY(%s) AND relkind = 'r' "
                "AND pg_table_is_visible(oid) ORDER BY relname",
                [sorted(tables)],
            )
            for (table,) in cursor.fetchall():
                cursor.execute(f"ANALYZE {qn(table)}")
    except Exception:
        logger.warning("ANALYZE after a large upsert failed", exc_info=True)
