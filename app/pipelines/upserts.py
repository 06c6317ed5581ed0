"""``upsert_products`` written in SQL, set-based (the route ``staged.applies`` chooses).

The object route builds a ``Product`` per row (an instance for each existing SKU, one for
each new one) so that every receiver sees each save. When only the project's receivers
listen, a chunk of validated rows (``RowValues`` tuples, SKUs distinct) is staged instead in
a temporary table (PostgreSQL: copied, ``COPY``; SQLite: one JSON parameter), each SKU
resolved to its product (locked, in primary-key order, with its old values), the stock
totals checked against the other locations' levels (nothing is written when one fails), and
applied with one ``UPDATE`` and one ``INSERT``. The change set (``StagedChanges`` over
``CHANGED_ROWS``: rows ``created`` and ``updated`` with their old and new values, read from
the stage alone) goes to the change pipeline's effects (history, ledger, stock levels,
webhooks, alerts, cache), set-based, as the map steps' does.

On PostgreSQL the stage is dropped when the transaction ends (``ON COMMIT DROP``): behind
a transaction pooler (PgBouncer) the server connection goes to other clients after it.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from django.db import connections, transaction
from django.utils import timezone

from ..core import encoding, jobs, sqlrows
from ..core.sqlrows import column_converter
from ..models import Location, PriceHistory, Product, StockAlert, StockLevel, StockMovement
from ..tracking import adapters
from ..tracking.batch import record_set
from ..tracking.changes import CREATED, STOCK_UPDATED, UPDATED, StagedChanges
from ..tracking.levels import default_location_id
from .rows import RowValues
from .writer import MAX_LISTED, MAX_REPORTED, StepUnit, created_meanwhile

logger = logging.getLogger(__name__)

UPSERT_STAGE = "stockpipe_upsert"
# PostgreSQL: the chunk's rows as copied, before they are resolved into the stage.
UPSERT_ROWS = "stockpipe_upsert_rows"
_ROWS_COLUMNS = "ord integer, sku text, name text, price numeric, stock bigint, threshold bigint"
# Rows staged per statement, per database (``connection.vendor``). Each chunk's statements
# join the stage to whole tables (on PostgreSQL the product UPDATE and the levels effect
# hash them) and the stage is analyzed once per chunk, so fewer, larger chunks are cheaper:
# 50,000 against 10,000 took a 100,000-row PostgreSQL upsert from about 0.66x to 0.81x of
# the benchmark's limit. On PostgreSQL 100,000 was not faster at 100,000 rows in the noise
# and read 0.60x at 1,000,000 (0.84-0.89x at 50,000; a stage of 100,000 rows likely
# outgrows ``work_mem``'s hash), so 50,000 stays there. SQLite joins by index probes, and
# with its 64 MiB page cache (settings) 100,000 took a 1,000,000-row upsert from about
# 0.80-0.85x to 0.90-0.95x (10 chunks' statements instead of 20). Memory: a chunk is held as the
# stage's text (``StageRows``); a 1,000,000-row CSV upsert peaked at 129 MB with 100,000-row
# chunks (123-126 MB with 50,000 rows held as ``RowValues``; target 150 MB at 10,000,000
# rows).
STAGE_CHUNKS = {"postgresql": 50_000, "sqlite": 100_000}
# At most the rows of a step's first chunk: the writer waits while it is read (the next ones
# are read while the one before is written), so a 100,000-row SQLite upsert is two chunks,
# the second read while the first is written (in one chunk its rounds read 0.68-0.91x of the
# limit, in two 0.79-0.89x: noisy, not worse).
STAGE_FIRST_CHUNK = 50_000
# Rows taken into a chunk's text at a time (``StageRows.add``; a mapped feed's come one by one).
STAGE_ADD = 1_000
# PostgreSQL: the statistics target of the stage's columns (the default is 100).
STAGE_STATISTICS = 10
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


# PostgreSQL: the tables the effects' statements filter and join. A first import into a
# new database fills them inside the run, before autovacuum ever analyzed them: without
# column statistics the planner takes a condition such as ``resolved_at IS NULL`` to hold
# for 0.5 % of the rows, and loops over rows it expects one of (a 100,000-product first
# import spent 95 s in the alerts statement of its second chunk). ``analyze_unanalyzed``.
PLANNED = (Product, StockLevel, StockAlert)


class StageRows:
    """A chunk of rows for the stage (distinct SKUs), kept as the text the stage is loaded
    from, added a block at a time: PostgreSQL's ``COPY`` lines (text format), SQLite's JSON
    arrays. A row's text takes a fraction of the memory of its
    Python values (a ``RowValues`` tuple with its strings and ``Decimal``, and a dict
    entry), so a chunk of ``STAGE_CHUNKS`` rows does not hold them all (the block being
    read is the only one alive)."""

    def __init__(self, pg: bool) -> None:
        self.pg = pg
        self.count = 0
        self.skus: set[str] = set()  # for a repeated SKU (a new chunk)
        # Rows giving a stock, a threshold (``COUNTS``).
        self.given = [0] * len(COUNTS)
        self._text: list[str] = []  # COPY lines or JSON arrays, a block's per item

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
            self._text.append(copy_lines(columns, start=self.count - len(rows) + 1))
        else:
            # Tuples are JSON arrays; a price is its text, as ``str`` gives it.
            self._text.append(encoding.dumps(rows, default=str)[1:-1])

    def payload(self) -> list[str]:
        """The stage's parameters (SQLite): one JSON array of the rows. Taken once: the
        pieces are let go as they are joined."""
        params = ["[" + ",".join(self._text) + "]"]
        self._text.clear()
        self.skus = set()
        return params

    def copy_text(self) -> Iterator[str]:
        """The rows as ``COPY`` text (PostgreSQL), a block at a time, each let go once
        given. Taken once."""
        parts = self._text
        self.skus = set()
        parts.reverse()
        while parts:
            yield parts.pop()


# COPY's text format: a backslash, a tab, a newline and a carriage return in a value are
# escaped (so a name reading ``\N`` stays text, not NULL); NULL is ``\N``.
_COPY_SPECIAL = ("\\", "\t", "\n", "\r")
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def copy_lines(columns: Sequence[Sequence[Any]], *, start: int) -> str:
    """``COPY`` lines (text format) of the rows given as ``RowValues`` columns, each row
    preceded by its number (from ``start``): SKU and name escaped where they need it,
    prices and counts as written, ``None`` as NULL."""
    skus, names, prices, stocks, thresholds = columns
    texts = []
    for column in (skus, names):
        joined = "".join(column)
        if any(special in joined for special in _COPY_SPECIAL):
            column = [value.translate(_COPY_ESCAPES) for value in column]
        texts.append(column)
    counts = [
        ["\\N" if value is None else str(value) for value in column]
        for column in (stocks, thresholds)
    ]
    ords = map(str, range(start, start + len(skus)))
    rows = zip(ords, *texts, map(str, prices), *counts, strict=True)
    return "\n".join(map("\t".join, rows)) + "\n"


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
        if pg:
            analyze_unanalyzed(cursor)
        resolved, price_changes, stock_updated, ids = _stage(cursor, pg, rows, product)
        _check_totals(unit, cursor, key)
        _list_price_changes(unit, cursor, price_changes)

        def write() -> None:
            at = timezone.now()
            stamp = connection.ops.adapt_datetimefield_value(at)
            # PostgreSQL: within the chunk's range of ids (``STAGE_COUNTS``). SQLite probes
            # the products by the stage's ids already.
            bounded = f"AND {product}.id BETWEEN %s AND %s " if pg else ""
            cursor.execute(
                f"UPDATE {product} SET {sets}, updated_at = %s "
                f"FROM {UPSERT_STAGE} s WHERE {product}.id = s.product_id {bounded}"
                f"AND ({differs})",
                [stamp, *ids] if pg else [stamp],
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
                if created > resolved:
                    # The stage was analyzed when these rows had no product: its statistics
                    # would have the effects' statements expect almost no changed rows and
                    # loop over them (a first import into an empty catalogue took 95 s in
                    # one statement against 3 s).
                    _analyze_stage(cursor, UPSERT_STAGE)
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


def _stage(
    cursor, pg: bool, rows: StageRows, product: str
) -> tuple[int, int, int, tuple[int | None, int | None]]:
    """The rows as ``(ord, sku, name, price, stock, threshold)`` of a temporary table of
    this connection, each with its product's id and old values (null for a new SKU); the
    products are locked (in primary-key order, as by every other writer) first. Returns
    how many rows name an existing product (PostgreSQL; 0 on SQLite), and ``STAGE_COUNTS``."""
    columns = (
        "ord integer PRIMARY KEY, sku text NOT NULL, name text NOT NULL, price numeric NOT NULL, "
        "stock bigint, threshold bigint, product_id bigint, created integer NOT NULL DEFAULT 0, "
        "old_name text, old_price numeric, old_stock bigint, old_threshold bigint"
    )
    if pg:
        # The rows are copied (``COPY``, text format) into a table of their own, then
        # inserted into the stage each with its locked product (locked first, in
        # primary-key order: a product renamed or deleted meanwhile is not taken by its old
        # SKU), so every stage row is written once. Against the rows as array parameters
        # of one statement (``unnest``), the server neither parses a literal of the whole
        # chunk nor guesses the number of SKUs (the rows are analyzed).
        for table, definition in ((UPSERT_STAGE, columns), (UPSERT_ROWS, _ROWS_COLUMNS)):
            cursor.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({definition}) ON COMMIT DROP")
            cursor.execute(f"TRUNCATE {table}")
        with cursor.cursor.copy(f"COPY {UPSERT_ROWS} FROM STDIN") as copy:
            for text in rows.copy_text():
                copy.write(text)
        _analyze_stage(cursor, UPSERT_ROWS)
        # Each row's product is found by a probe of the SKU index (a ``LATERAL`` subquery
        # with a ``LIMIT`` is never turned into a join, so never into a scan of the whole
        # catalogue: a hash join read all of it for every chunk of a feed not in SKU
        # order), then the products are locked by id, in id order (``= ANY`` of the ids
        # is an index scan of the primary key). A product renamed meanwhile is locked but
        # not joined (``l.sku = t.sku`` compares its locked row), so not taken by its old
        # SKU; one deleted meanwhile is not locked: both rows stage as new SKUs. The planner
        # takes any ``= ANY`` of a subquery's array for 10 rows, so it hashes the locked
        # products to join them: not to be run under ``hash_joins_off`` (a nested loop of
        # the chunk's rows by its locked products, 50,000 x 50,000 comparisons).
        cursor.execute(
            f"WITH i AS (INSERT INTO {UPSERT_STAGE} (ord, sku, name, price, stock, threshold, "
            "product_id, old_name, old_price, old_stock, old_threshold) SELECT t.ord, t.sku, "
            "t.name, t.price, t.stock, t.threshold, l.id, l.name, l.price, l.stock, "
            f"l.low_stock_threshold FROM {UPSERT_ROWS} t LEFT JOIN (SELECT p.id, p.sku, "
            f"p.name, p.price, p.stock, p.low_stock_threshold FROM {product} p WHERE p.id = "
            f"ANY(ARRAY(SELECT q.id FROM {UPSERT_ROWS} r CROSS JOIN LATERAL (SELECT x.id "
            f"FROM {product} x WHERE x.sku = r.sku LIMIT 1) q)) ORDER BY p.id FOR UPDATE) l "
            "ON l.sku = t.sku RETURNING product_id, old_price, price, old_stock, stock) "
            f"SELECT COUNT(product_id), {STAGE_COUNTS} FROM i s"
        )
        resolved, *counts = cursor.fetchone()
        _analyze_stage(cursor, UPSERT_STAGE)
        return resolved, *_counted(counts)
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
    cursor.execute(f"SELECT {STAGE_COUNTS} FROM {UPSERT_STAGE} s")
    return 0, *_counted(cursor.fetchone())


def _analyze_stage(cursor, table: str) -> None:
    """ANALYZE a stage table (PostgreSQL) sampling ``STAGE_STATISTICS`` * 300 rows, not
    30,000: sorting the text columns' samples was most of its 0.1-0.15 s per 50,000-row
    chunk, and the statements reading the stage need its size and shares, not fine
    histograms. (A column's own target, ``ALTER TABLE``, cost 6 ms per table and chunk.)"""
    with sqlrows.setting(cursor, "default_statistics_target", str(STAGE_STATISTICS)):
        cursor.execute(f"ANALYZE {table}")


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


# Over the staged rows ``s`` (after their lookup): how many products that exist already get
# a new price, how many a new stock, and the lowest and highest of their ids (a new SKU's
# old values and id are null: not counted). The second is the change set's
# ``STOCK_UPDATED`` count: with it the levels effect looks for missing levels among the
# created products alone (``app.tracking.levels``). The ids bound the product ``UPDATE``
# to the chunk's range of the table: a merge join over the primary key otherwise reads it
# from its first row for every chunk (chunk ``k`` of a feed in catalogue order read ``k``
# chunks' rows), a hash join reads the whole table. PostgreSQL counts them in the lookup's
# statement, SQLite in a pass over the stage.
STAGE_COUNTS = (
    "COUNT(CASE WHEN s.old_price <> s.price THEN 1 END), "
    "COUNT(CASE WHEN s.stock <> s.old_stock THEN 1 END), MIN(s.product_id), MAX(s.product_id)"
)


def _counted(counts: Sequence[Any]) -> tuple[int, int, tuple[int | None, int | None]]:
    prices, stocks, low, high = counts
    return prices, stocks, (low, high)


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


def analyze_unanalyzed(cursor) -> None:
    """ANALYZE the tables of ``PLANNED`` that hold rows but were never analyzed while they
    did (PostgreSQL: ``reltuples`` -1, or 0 from an empty table; the rows may be this
    transaction's own, which ANALYZE counts). On a database in use autovacuum analyzed them
    long ago: one catalogue query (``pg_stats`` would say it too, in 15 ms against 0.05).
    A table another transaction is analyzing is skipped (``SKIP_LOCKED``), not waited for:
    the lock is held until the run ends."""
    qn = cursor.db.ops.quote_name
    cursor.execute(
        "SELECT c.relname FROM pg_class c WHERE c.relname = ANY(%s) AND c.relkind = 'r' "
        "AND pg_table_is_visible(c.oid) AND c.reltuples <= 0 AND pg_relation_size(c.oid) > 0 "
        "ORDER BY c.relname",
        [[model._meta.db_table for model in PLANNED]],
    )
    for (table,) in cursor.fetchall():
        cursor.execute(f"ANALYZE (SKIP_LOCKED) {qn(table)}")


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
