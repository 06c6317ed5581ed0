"""Monthly partitions for price history, the stock ledger and the webhook outbox (PostgreSQL).

Opt-in (``manage.py partition_tables``), never done by ``migrate``: SQLite and small installs
keep plain tables, and the models do not change (``id`` stays the model's primary key; the
table's ``PRIMARY KEY`` becomes ``(id, <time column>)``, which keeps ``id`` unique as far as
Django relies on it: it never checks uniqueness itself, and ``save()``, ``delete()``,
``RETURNING id`` and ``select_for_update()`` address rows by ``id``).

The conversion does not rewrite the table. Online, while the application writes: a unique
index ``(id, <time>)`` is built ``CONCURRENTLY`` and a ``CHECK (<time> < bound)`` is added
``NOT VALID`` and then validated (reads and writes go on). Then, in one short transaction
under an exclusive lock, the old table is renamed ``<table>_legacy`` and attached, as it is,
as the partition of everything before ``bound`` (the valid CHECK spares PostgreSQL the scan)
to a new partitioned table of the old name, with the same columns, indexes (same names, the
old ones attached to them, not rebuilt), foreign keys and check constraints, its ``id``
identity continuing the old sequence. Monthly partitions follow from ``bound`` on, and a
``DEFAULT`` partition takes any row no month holds, so no insert ever fails.

What a partitioned table cannot hold is replaced by triggers that keep the same rules:

* a ``UNIQUE`` column without the time column (the ledger's ``idempotency_key``): a side
  table ``<table>_<column>_uniq`` with the column as its primary key, filled by a row
  trigger; a second row with the same key fails with a unique violation (``IntegrityError``)
  as before, so the stock service's replay of a racing request works unchanged;
* a foreign key pointing at the table (webhook attempts -> delivery): constraint triggers,
  deferred like Django's foreign keys, on both sides (a row must exist for an attempt; a
  delivery with attempts cannot go).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TypeVar

from django.db import OperationalError, connections, models, transaction
from django.utils import timezone

from ..models import PriceHistory, StockMovement
from ..models.webhooks import WebhookDelivery

T = TypeVar("T")
LOCK_TIMEOUT = "5s"  # a DDL lock waited for longer makes every query queue behind it
DROP_CHECK_TIMEOUT = "5s"  # each statement run under a partition drop's exclusive lock
LOCK_TRIES = 10
BACKFILL_BATCH = 10000
MARGIN = timedelta(days=7)


class PartitioningError(Exception):
    """A step could not be done; the message says which and why."""


class DropCheckTimedOut(PartitioningError):
    """A partition drop's statements under its lock ran past ``DROP_CHECK_TIMEOUT``: that
    drop was rolled back, nothing of it was done."""


@dataclass(frozen=True)
class Partitioned:
    """A model whose table may be partitioned by month on ``key`` (a timestamp column)."""

    name: str
    model: type[models.Model]
    key: str

    @property
    def table(self) -> str:
        return self.model._meta.db_table


TABLES = (
    Partitioned("price_history", PriceHistory, "changed_at"),
    Partitioned("ledger", StockMovement, "created_at"),
    Partitioned("outbox", WebhookDelivery, "created_at"),
)


@dataclass
class Step:
    """One step of a plan: what it does, the SQL it runs (shown by a dry run), and for the
    steps that are not plain SQL, the function that does the work."""

    what: str
    sql: list[str] = field(default_factory=list)
    run: Callable[[], object] | None = None
    atomic: bool = False


def month_start(at: datetime) -> datetime:
    at = at.astimezone(UTC)
    return datetime(at.year, at.month, 1, tzinfo=UTC)


def add_months(at: datetime, months: int) -> datetime:
    index = at.year * 12 + at.month - 1 + months
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


def legacy_bound(now: datetime) -> datetime:
    """End of the old table's range: the start of the month after the one a week from
    ``now``, so rows written while the conversion runs (at least a week) fall below it."""
    return add_months(month_start(now + MARGIN), 1)


def is_partitioned(table: str, *, using: str = "default") -> bool:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE oid = to_regclass(%s)", [table])
        row = cursor.fetchone()
    return row is not None and row[0] == "p"


def _name(base: str, suffix: str) -> str:
    """An identifier ``base_suffix`` within PostgreSQL's 63 bytes (hashed if longer)."""
    name = f"{base}_{suffix}"
    if len(name) <= 63:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{base[: 63 - len(suffix) - 10]}_{digest}_{suffix}"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# --- conversion ---------------------------------------------------------------------------


def conversion_plan(spec: Partitioned, now: datetime, *, using: str = "default") -> list[Step]:
    """The steps converting ``spec``'s table (which must not be partitioned yet)."""
    t, key = spec.table, spec.key
    bound = legacy_bound(now)
    pk_index = _name(t, "part_pk")
    check = _name(t, "legacy_bound")
    steps = [
        Step(
            f"build the unique index (id, {key}) the partitions' primary key needs, without "
            "blocking writes",
            [f"CREATE UNIQUE INDEX CONCURRENTLY {_q(pk_index)} ON {_q(t)} (id, {_q(key)})"],
            run=lambda: _build_index(t, pk_index, key, using),
        ),
        Step(
            f"bound the old rows: CHECK ({key} < {bound:%Y-%m-%d}), added NOT VALID, then "
            "validated while writes go on",
            [
                f"ALTER TABLE {_q(t)} ADD CONSTRAINT {_q(check)} CHECK ({_q(key)} < "
                f"'{bound.isoformat()}') NOT VALID",
                f"ALTER TABLE {_q(t)} VALIDATE CONSTRAINT {_q(check)}",
            ],
            run=lambda: _retrying(f"bound {t}", lambda: _add_bound(t, check, key, bound, using)),
        ),
    ]
    for column in _unique_columns(spec):
        side = _name(t, f"{column}_uniq")
        steps.append(
            Step(
                f"keep {column} unique across partitions: side table {side}, kept by a "
                "trigger, filled from the existing rows in batches",
                [
                    f"CREATE TABLE {_q(side)} (value ... PRIMARY KEY, row_id bigint NOT NULL)",
                    f"CREATE TRIGGER ... AFTER INSERT OR UPDATE OR DELETE ON {_q(t)}",
                    f"INSERT INTO {_q(side)} SELECT {_q(column)}, id FROM {_q(t)} "
                    "WHERE id > %s ... ON CONFLICT DO NOTHING",
                ],
                run=lambda column=column: _prepare_unique(spec, column, using),
            )
        )
    incoming = ", ".join(f"{c}.{col}" for c, col, _ in _incoming_fks(t, using))
    steps.append(
        Step(
            f"switch (one transaction, lock_timeout {LOCK_TIMEOUT}): rename {t} to "
            f"{t}_legacy, create {t} partitioned by month on {key} with the same columns, "
            f"indexes, foreign keys and checks, PRIMARY KEY (id, {key}), the id sequence "
            f"continued; attach {t}_legacy for (MINVALUE .. {bound:%Y-%m-%d}) without a scan; "
            f"add {t}_default"
            + (f"; foreign keys from {incoming} become constraint triggers" if incoming else ""),
            [
                f"LOCK TABLE {_q(t)} IN ACCESS EXCLUSIVE MODE",
                f"ALTER TABLE {_q(t)} RENAME TO {_q(t + '_legacy')}",
                f"CREATE TABLE {_q(t)} (LIKE {_q(t + '_legacy')} INCLUDING DEFAULTS "
                f"INCLUDING CONSTRAINTS) PARTITION BY RANGE ({_q(key)})",
                f"ALTER TABLE {_q(t)} ATTACH PARTITION {_q(t + '_legacy')} FOR VALUES FROM "
                f"(MINVALUE) TO ('{bound.isoformat()}')",
                f"CREATE TABLE {_q(t + '_default')} PARTITION OF {_q(t)} DEFAULT",
            ],
            run=lambda: _retrying(f"lock {t}", lambda: _switch(spec, bound, using)),
            atomic=True,
        )
    )
    return steps


def _retrying(what: str, run: Callable[[], T]) -> T:
    """Run a step that takes a table lock, again when the lock was not granted within
    ``LOCK_TIMEOUT`` (long transactions held it); it changed nothing then."""
    for _ in range(LOCK_TRIES):
        try:
            return run()
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != "55P03":  # lock_not_available
                raise
    raise PartitioningError(
        f"{what}: the table lock was not granted within {LOCK_TIMEOUT} in {LOCK_TRIES} tries "
        "(long transactions hold it); try again later"
    )


def _build_index(table: str, index: str, key: str, using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT i.indisvalid FROM pg_index i WHERE i.indexrelid = to_regclass(%s)", [index]
        )
        row = cursor.fetchone()
        if row is not None and row[0]:
            return
        if row is not None:  # left invalid by an interrupted run
            cursor.execute(f"DROP INDEX CONCURRENTLY {_q(index)}")
        cursor.execute(
            f"CREATE UNIQUE INDEX CONCURRENTLY {_q(index)} ON {_q(table)} (id, {_q(key)})"
        )


def _add_bound(table: str, check: str, key: str, bound: datetime, using: str) -> None:
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(%s) AND conname = %s",
            [table, check],
        )
        row = cursor.fetchone()
        if row is not None:  # an interrupted run's: keep it if it bounds at the same date
            cursor.execute(f"ALTER TABLE {_q(table)} DROP CONSTRAINT {_q(check)}")
        with transaction.atomic(using=using):
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute(
                f"ALTER TABLE {_q(table)} ADD CONSTRAINT {_q(check)} "
                f"CHECK ({_q(key)} < %s::timestamptz) NOT VALID",
                [bound.isoformat()],
            )
        cursor.execute(f"ALTER TABLE {_q(table)} VALIDATE CONSTRAINT {_q(check)}")


def _unique_columns(spec: Partitioned) -> list[str]:
    """Columns with a single-column unique constraint other than the primary key."""
    return [
        f.column
        for f in spec.model._meta.concrete_fields
        if f.unique and not f.primary_key and f.column != spec.key
    ]


def _unique_sql(table: str, column: str, side: str, column_type: str) -> list[str]:
    function = _name(side, "fn")
    trigger = _name(side, "trg")
    truncate = _name(side, "trunc")
    c = _q(column)
    return [
        f"CREATE TABLE IF NOT EXISTS {_q(side)} (value {column_type} PRIMARY KEY, "
        "row_id bigint NOT NULL)",
        f"""CREATE OR REPLACE FUNCTION {_q(function)}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND OLD.{c} IS NOT DISTINCT FROM NEW.{c} AND OLD.id = NEW.id THEN
        RETURN NULL;
    END IF;
    IF TG_OP IN ('DELETE', 'UPDATE') AND OLD.{c} IS NOT NULL THEN
        DELETE FROM {_q(side)} WHERE value = OLD.{c} AND row_id = OLD.id;
    END IF;
    IF TG_OP IN ('INSERT', 'UPDATE') AND NEW.{c} IS NOT NULL THEN
        INSERT INTO {_q(side)} (value, row_id) VALUES (NEW.{c}, NEW.id);
    END IF;
    RETURN NULL;
END $$""",
        f"""CREATE OR REPLACE FUNCTION {_q(truncate)}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    TRUNCATE {_q(side)};
    RETURN NULL;
END $$""",
        f"CREATE OR REPLACE TRIGGER {_q(trigger)} AFTER INSERT OR DELETE OR UPDATE OF {c}, id "
        f"ON {_q(table)} FOR EACH ROW EXECUTE FUNCTION {_q(function)}()",
        f"CREATE OR REPLACE TRIGGER {_q(truncate)} AFTER TRUNCATE ON {_q(table)} "
        f"FOR EACH STATEMENT EXECUTE FUNCTION {_q(truncate)}()",
    ]


def _column_type(table: str, column: str, cursor) -> str:
    cursor.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = to_regclass(%s) AND attname = %s",
        [table, column],
    )
    return cursor.fetchone()[0]


def _prepare_unique(spec: Partitioned, column: str, using: str) -> None:
    """Side table and trigger on the old table first (new rows fill it from now on), then
    the existing keys in batches of ids (a key a concurrent writer added is skipped)."""
    t = spec.table
    side = _name(t, f"{column}_uniq")
    with connections[using].cursor() as cursor:
        with transaction.atomic(using=using):
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            for sql in _unique_sql(t, column, side, _column_type(t, column, cursor)):
                cursor.execute(sql)
        after = 0
        while True:
            cursor.execute(
                f"WITH batch AS (SELECT id, {_q(column)} AS value FROM {_q(t)} WHERE id > %s "
                f"ORDER BY id LIMIT {BACKFILL_BATCH}), "
                f"ins AS (INSERT INTO {_q(side)} (value, row_id) SELECT value, id FROM batch "
                "WHERE value IS NOT NULL ON CONFLICT DO NOTHING) SELECT max(id) FROM batch",
                [after],
            )
            last = cursor.fetchone()[0]
            if last is None:
                return
            after = last


def _incoming_fks(table: str, using: str) -> list[tuple[str, str, str]]:
    """(table, column, constraint) of single-column foreign keys pointing at ``table``,
    or, once converted, of the trigger-kept ones (found by their trigger)."""
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.conrelid::regclass::text, a.attname, c.conname FROM pg_constraint c "
            "JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] "
            "WHERE c.contype = 'f' AND c.confrelid = to_regclass(%s) "
            "AND array_length(c.conkey, 1) = 1 ORDER BY 1, 2",
            [table],
        )
        return [(name.strip('"'), column, constraint) for name, column, constraint in cursor]


def _fk_trigger_sql(parent: str, child: str, column: str) -> list[str]:
    """The foreign key ``child.column -> parent.id`` as deferred constraint triggers."""
    base = _name(child, f"{column}_fk")
    check_child, check_parent = _name(base, "child"), _name(base, "parent")
    c = _q(column)
    return [
        f"""CREATE OR REPLACE FUNCTION {_q(check_child)}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- As PostgreSQL's own deferred check: a row deleted or changed since needs none.
    IF NEW.{c} IS NOT NULL
       AND EXISTS (SELECT 1 FROM {_q(child)} WHERE id = NEW.id AND {c} = NEW.{c}) THEN
        PERFORM 1 FROM {_q(parent)} WHERE id = NEW.{c} FOR KEY SHARE;
        IF NOT FOUND THEN
            RAISE foreign_key_violation USING MESSAGE = format(
                'insert or update on table "{child}" violates foreign key: '
                'Key ({column})=(%s) is not present in table "{parent}".', NEW.{c});
        END IF;
    END IF;
    RETURN NULL;
END $$""",
        f"""CREATE OR REPLACE FUNCTION {_q(check_parent)}() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.id = OLD.id THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM {_q(child)} WHERE {c} = OLD.id)
       AND NOT EXISTS (SELECT 1 FROM {_q(parent)} WHERE id = OLD.id) THEN
        RAISE foreign_key_violation USING MESSAGE = format(
            'update or delete on table "{parent}" violates foreign key from "{child}": '
            'Key (id)=(%s) is still referenced.', OLD.id);
    END IF;
    RETURN NULL;
END $$""",
        f"DROP TRIGGER IF EXISTS {_q(check_child)} ON {_q(child)}",
        f"CREATE CONSTRAINT TRIGGER {_q(check_child)} AFTER INSERT OR UPDATE OF {c} "
        f"ON {_q(child)} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        f"EXECUTE FUNCTION {_q(check_child)}()",
        f"DROP TRIGGER IF EXISTS {_q(check_parent)} ON {_q(parent)}",
        f"CREATE CONSTRAINT TRIGGER {_q(check_parent)} AFTER DELETE OR UPDATE OF id "
        f"ON {_q(parent)} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW "
        f"EXECUTE FUNCTION {_q(check_parent)}()",
    ]


def _switch(spec: Partitioned, bound: datetime, using: str) -> None:
    t, key = spec.table, spec.key
    legacy = _name(t, "legacy")
    pk_index = _name(t, "part_pk")
    check = _name(t, "legacy_bound")
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute(f"LOCK TABLE {_q(t)} IN ACCESS EXCLUSIVE MODE")
        # What the new table must have, read under the lock.
        cursor.execute("SELECT pg_get_serial_sequence(%s, 'id')", [t])
        sequence = cursor.fetchone()[0]
        cursor.execute(f"SELECT last_value, is_called FROM {sequence}")
        last_value, is_called = cursor.fetchone()
        cursor.execute(
            "SELECT c.relname, pg_get_indexdef(i.indexrelid), i.indisunique, "
            "EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid "
            "AND k.conrelid = i.indrelid), "
            "ARRAY(SELECT attname FROM pg_attribute WHERE attrelid = i.indrelid "
            "AND attnum = ANY(i.indkey)) "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "WHERE i.indrelid = to_regclass(%s) ORDER BY c.relname",
            [t],
        )
        indexes = cursor.fetchall()
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(%s) AND contype = 'f' ORDER BY conname",
            [t],
        )
        foreign_keys = cursor.fetchall()
        incoming = _incoming_fks(t, using)
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = to_regclass(%s) AND contype = 'p'",
            [t],
        )
        old_pk = cursor.fetchone()[0]

        for child, _, constraint in incoming:
            cursor.execute(f"ALTER TABLE {_q(child)} DROP CONSTRAINT {_q(constraint)}")
        for column in _unique_columns(spec):  # its trigger moves to the new table below
            cursor.execute(
                f"DROP TRIGGER {_q(_name(_name(t, column + '_uniq'), 'trg'))} ON {_q(t)}"
            )
            cursor.execute(
                f"DROP TRIGGER {_q(_name(_name(t, column + '_uniq'), 'trunc'))} ON {_q(t)}"
            )
        cursor.execute(f"ALTER TABLE {_q(t)} ALTER COLUMN id DROP IDENTITY")
        cursor.execute(f"ALTER TABLE {_q(t)} DROP CONSTRAINT {_q(old_pk)}")
        cursor.execute(
            f"ALTER TABLE {_q(t)} ADD CONSTRAINT {_q(_name(legacy, 'pkey'))} "
            f"PRIMARY KEY USING INDEX {_q(pk_index)}"
        )
        recreate = []
        for name, definition, unique, _constraint, columns in indexes:
            if name in (pk_index, old_pk):
                continue
            cursor.execute(f"ALTER INDEX {_q(name)} RENAME TO {_q(_name(name, 'legacy'))}")
            if unique and key not in columns:
                continue  # kept by the side table's trigger instead
            recreate.append(definition)
        cursor.execute(f"ALTER TABLE {_q(t)} RENAME TO {_q(legacy)}")

        cursor.execute(
            f"CREATE TABLE {_q(t)} (LIKE {_q(legacy)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) "
            f"PARTITION BY RANGE ({_q(key)})"
        )
        cursor.execute(f"ALTER TABLE {_q(t)} DROP CONSTRAINT {_q(check)}")
        cursor.execute(f"ALTER TABLE {_q(t)} ALTER COLUMN id ADD GENERATED BY DEFAULT AS IDENTITY")
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s, %s)", [t, last_value, is_called]
        )
        cursor.execute(
            f"ALTER TABLE {_q(t)} ADD CONSTRAINT {_q(old_pk)} PRIMARY KEY (id, {_q(key)})"
        )
        for definition in recreate:
            cursor.execute(definition)  # the old name, on the new table: the old index attaches
        for name, definition in foreign_keys:
            cursor.execute(f"ALTER TABLE {_q(t)} ADD CONSTRAINT {_q(name)} {definition}")
        cursor.execute(
            f"ALTER TABLE {_q(t)} ATTACH PARTITION {_q(legacy)} "
            "FOR VALUES FROM (MINVALUE) TO (%s::timestamptz)",
            [bound.isoformat()],
        )
        cursor.execute(f"ALTER TABLE {_q(legacy)} DROP CONSTRAINT {_q(check)}")
        cursor.execute(f"CREATE TABLE {_q(_name(t, 'default'))} PARTITION OF {_q(t)} DEFAULT")

        for column in _unique_columns(spec):
            side = _name(t, f"{column}_uniq")
            for sql in _unique_sql(t, column, side, _column_type(t, column, cursor)):
                cursor.execute(sql)
            # A key whose row a concurrent delete removed while the batches were copied.
            cursor.execute(
                f"DELETE FROM {_q(side)} s WHERE NOT EXISTS "
                f"(SELECT 1 FROM {_q(t)} r WHERE r.id = s.row_id AND r.{_q(column)} = s.value)"
            )
        for child, column, _ in incoming:
            for sql in _fk_trigger_sql(t, child, column):
                cursor.execute(sql)


# --- monthly partitions ---------------------------------------------------------------------

_BOUND = re.compile(r"FOR VALUES FROM \((.+?)\) TO \((.+?)\)")


def partitions(
    table: str, *, using: str = "default"
) -> list[tuple[str, datetime | None, datetime | None]]:
    """(name, start, end) of each range partition of ``table`` (None: MINVALUE/MAXVALUE),
    then its default partition as (name, None, None) if it has one."""
    rows, default = [], []
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
            "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = to_regclass(%s)",
            [table],
        )
        found = cursor.fetchall()
        for name, expression in found:
            match = _BOUND.match(expression)
            if match is None:
                default.append((name, None, None))
                continue
            ends = []
            for literal in match.groups():
                if literal in ("MINVALUE", "MAXVALUE"):
                    ends.append(None)
                else:
                    cursor.execute(f"SELECT {literal}::timestamptz")
                    ends.append(cursor.fetchone()[0])
            rows.append((name, *ends))
    rows.sort(key=lambda row: (row[1] is not None, row[1] or datetime.min.replace(tzinfo=UTC)))
    return rows + default


def missing_months(
    spec: Partitioned, now: datetime, ahead: int, *, using: str = "default"
) -> list[datetime]:
    """Starts of the months from ``now``'s to ``ahead`` months later that no partition
    holds yet."""
    existing = [(start, end) for _, start, end in partitions(spec.table, using=using)]
    months = []
    first = month_start(now)
    for n in range(ahead + 1):
        start, end = add_months(first, n), add_months(first, n + 1)
        if not any(
            (lo is None or lo < end) and (hi is None or start < hi)
            for lo, hi in existing
            if (lo, hi) != (None, None)
        ):
            months.append(start)
    return months


def create_month(spec: Partitioned, start: datetime, *, using: str = "default") -> str:
    """Create the partition of the month beginning ``start``; rows the default partition
    took for that month move into it. Serialised by an advisory lock, so two runs at once
    create it once (the second finds it)."""
    t, key = spec.table, spec.key
    end = add_months(start, 1)
    name = _name(t, f"p{start:%Y_%m}")
    default = _name(t, "default")
    connection = connections[using]
    with transaction.atomic(using=using), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
        cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"partition:{t}"])
        if start not in missing_months(spec, start, 0, using=using):
            return name
        cursor.execute(
            f"CREATE TABLE {_q(name)} (LIKE {_q(t)} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
        )
        cursor.execute(
            f"ALTER TABLE {_q(name)} ADD CONSTRAINT {_q(_name(name, 'range'))} "
            f"CHECK ({_q(key)} >= %s::timestamptz AND {_q(key)} < %s::timestamptz)",
            [start.isoformat(), end.isoformat()],
        )
        moved = 0
        if to_regclass(default, cursor):
            # Rows of that month the default partition took (the month did not exist yet)
            # go back through the table once the month exists: its triggers see a delete
            # and an insert, as for an update that moves a row.
            staged = _name(name, "moving")
            cursor.execute(
                f"CREATE TEMPORARY TABLE {_q(staged)} ON COMMIT DROP AS "
                f"WITH gone AS (DELETE FROM {_q(default)} WHERE {_q(key)} >= %s::timestamptz "
                f"AND {_q(key)} < %s::timestamptz RETURNING *) SELECT * FROM gone",
                [start.isoformat(), end.isoformat()],
            )
            moved = cursor.rowcount
        cursor.execute(
            f"ALTER TABLE {_q(t)} ATTACH PARTITION {_q(name)} "
            "FOR VALUES FROM (%s::timestamptz) TO (%s::timestamptz)",
            [start.isoformat(), end.isoformat()],
        )
        cursor.execute(f"ALTER TABLE {_q(name)} DROP CONSTRAINT {_q(_name(name, 'range'))}")
        if moved:
            cursor.execute(f"INSERT INTO {_q(t)} SELECT * FROM {_q(staged)}")
    return name


def drop_partition(
    table: str, name: str, still_droppable: Callable[[], int | None], *, using: str = "default"
) -> int | None:
    """Detach and drop the partition ``name`` of ``table`` if ``still_droppable()`` (run
    under the lock: writers wait, so nothing changes between the check and the drop; keep
    it cheap, each statement is cut at ``DROP_CHECK_TIMEOUT``) says so; returns what it
    returned. The lock is ``LOCK_TIMEOUT`` at most and retried like the
    other steps: DETACH PARTITION (not CONCURRENTLY, which cannot run in a transaction)
    takes an ACCESS EXCLUSIVE lock on ``table`` for the transaction's few statements.
    Raises ``DropCheckTimedOut`` (this drop rolled back, nothing done) when a statement
    under the lock is cut: the caller decides whether to go on with the next one."""

    def run() -> int | None:
        connection = connections[using]
        with transaction.atomic(using=using), connection.cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            cursor.execute(f"LOCK TABLE {_q(table)} IN ACCESS EXCLUSIVE MODE")
            # Every writer of the table waits while the lock is held: what runs under it is
            # bounded. Set once the lock is granted: the wait for it is lock_timeout's, which
            # _retrying retries (a statement timeout as short fires first and is not retried).
            cursor.execute(f"SET LOCAL statement_timeout = '{DROP_CHECK_TIMEOUT}'")
            try:
                if not to_regclass(name, cursor):
                    return None  # another prune dropped it
                verdict = still_droppable()
                if verdict is None:
                    return None
                cursor.execute(f"ALTER TABLE {_q(table)} DETACH PARTITION {_q(name)}")
                cursor.execute(f"DROP TABLE {_q(name)}")
            except OperationalError as error:
                if getattr(error.__cause__, "sqlstate", None) != "57014":  # query_canceled
                    raise
                raise DropCheckTimedOut(
                    f"drop partition {name} of {table}: a statement under the table lock ran "
                    f"past {DROP_CHECK_TIMEOUT}; nothing dropped"
                ) from error
            return verdict

    return _retrying(f"drop partition {name} of {table}", run)


def to_regclass(name: str, cursor) -> bool:
    cursor.execute("SELECT to_regclass(%s) IS NOT NULL", [name])
    return cursor.fetchone()[0]


def ensure_ahead(
    ahead: int, *, now: datetime | None = None, using: str = "default", only: tuple[str, ...] = ()
) -> list[str]:
    """Create the missing monthly partitions, this month to ``ahead`` months on, of every
    partitioned table (plain tables are left alone). Returns what it did, a line each."""
    now = now or timezone.now()
    done = []
    for spec in selected(only):
        if not is_partitioned(spec.table, using=using):
            # A conversion interrupted for good must not leave its CHECK to refuse rows.
            if drop_stale_bound(spec, now + timedelta(days=1), using=using):
                done.append(f"{spec.table}: dropped an interrupted conversion's CHECK")
            continue
        for start in missing_months(spec, now, ahead, using=using):
            name = _retrying(
                f"create {spec.table}'s {start:%Y-%m}",
                partial(create_month, spec, start, using=using),
            )
            done.append(f"created partition {name}")
    return done


def selected(only: tuple[str, ...] = ()) -> list[Partitioned]:
    return [spec for spec in TABLES if not only or spec.name in only]


def convert(
    *,
    now: datetime | None = None,
    using: str = "default",
    only: tuple[str, ...] = (),
    say: Callable[[str], None] = lambda line: None,
) -> list[str]:
    """Convert every selected table that is not partitioned yet; returns their names."""
    now = now or timezone.now()
    converted = []
    for spec in selected(only):
        if is_partitioned(spec.table, using=using):
            continue
        try:
            for step in conversion_plan(spec, now, using=using):
                say(f"{spec.table}: {step.what}")
                step.run()
        except Exception:
            _undo_bound(spec, using, say)  # the plain table must take any row
            raise
        converted.append(spec.table)
    return converted


def _undo_bound(spec: Partitioned, using: str, say: Callable[[str], None]) -> None:
    """After a failed conversion, drop its CHECK again, waiting no longer for the lock than
    the steps do; if even that fails, the daily ``--ahead`` run drops it in time."""

    def drop() -> None:
        with transaction.atomic(using=using), connections[using].cursor() as cursor:
            cursor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
            drop_stale_bound(spec, None, using=using)

    try:
        _retrying(f"drop the CHECK of {spec.table}", drop)
    except PartitioningError as error:
        say(f"{error}; partition_tables --ahead (daily) drops it a day before its date")


_CHECK_BOUND = re.compile(r"< ('[^']+')::timestamp with time zone")


def drop_stale_bound(spec: Partitioned, before: datetime | None, *, using: str = "default") -> bool:
    """Drop the CHECK an interrupted conversion left on a plain table (whose rows it would
    refuse once its date comes), if it bounds before ``before`` (None: whatever its date)."""
    check = _name(spec.table, "legacy_bound")
    with connections[using].cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = to_regclass(%s) AND conname = %s",
            [spec.table, check],
        )
        row = cursor.fetchone()
        if row is None or is_partitioned(spec.table, using=using):
            return False
        if before is not None:
            match = _CHECK_BOUND.search(row[0])
            cursor.execute(f"SELECT {match.group(1)}::timestamptz")
            if cursor.fetchone()[0] >= before:
                return False
        cursor.execute(f"ALTER TABLE {_q(spec.table)} DROP CONSTRAINT IF EXISTS {_q(check)}")
        return True
