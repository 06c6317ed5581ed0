"""The limits of ``benchmarks/pipeline.py``: each workload as raw set-based SQL.

No Django in the loop: the DB-API connection, one transaction, SQL written by hand for this
schema. Each limit writes what the pipeline writes (``pipeline.py`` compares the tables
after each route): products, price history, stock ledger (naming the default location),
the default location's stock levels, low-stock alerts opened and resolved, deletion
audit rows and the references a deletion sets to NULL. Not written: the pipeline's run
record and the alert-delivery task it enqueues after commit (one row per 2,000 alerts).

Every workload comes in several forms, all timed; the fastest is "the limit":

* ``values``: the input as a ``VALUES`` list of SQL literals in a CTE, one statement per
  table, each repeating the list (the form this benchmark used until issue 13).
* PostgreSQL ``array``: one statement, the input as array parameters (``unnest``); the
  product ``UPDATE ... FROM`` a self-join ``RETURNING`` old and new values, the other
  tables written from it by data-modifying CTEs.
* PostgreSQL ``copy``: ``COPY`` into a temporary table, then that same one statement.
* SQLite ``json``: one JSON parameter staged into a temporary table (each row with its
  product's id), then one statement per table joined by primary key.
* SQLite ``executemany``: the temporary table filled by ``executemany`` instead.
* PostgreSQL ``array-keyorder`` and ``copy-keyorder``: the same with hash joins off for the
  transaction. At 1,000,000 products a hash join of the input with ``app_product``
  outgrows ``work_mem``, runs in batches and revisits every table and index page once per
  batch; the pipeline turns hash joins off for its map's product ``UPDATE`` for that reason
  (``app/pipelines/folded.py``), so the limit may do the same.
* ``adjust_prices`` has no input rows: ``steps`` (history ``INSERT ... SELECT``, then the
  ``UPDATE``) and, on PostgreSQL, ``cte`` (one ``UPDATE ... RETURNING`` feeding the insert).
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Callable
from decimal import Decimal

HISTORY = "app_pricehistory (product_id, sku, name, old_price, new_price, changed_at, source)"
LEDGER = (
    "app_stockmovement (product_id, location_id, sku, delta, stock_after, reason, "
    "created_at, source)"
)
ALERT = (
    "app_stockalert (product_id, sku, name, stock, threshold, opened_at, delivery_status, "
    "attempts, last_error)"
)
AUDIT = "app_deletionaudit (model_label, object_pk, object_repr, snapshot, deleted_at, source)"
NOT_OPEN = (
    "NOT EXISTS (SELECT 1 FROM app_stockalert a WHERE a.product_id = {id} "
    "AND a.location_id IS NULL AND a.resolved_at IS NULL)"
)


class Dialect:
    """What differs between the two databases in the SQL below."""

    def __init__(self, pg: bool, location: str, threshold: int) -> None:
        self.pg = pg
        self.now = "now()" if pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
        self.greatest = "GREATEST" if pg else "MAX"
        self.main = f"(SELECT id FROM app_location WHERE code = '{location}')"
        self.threshold = threshold
        # SQLite runs a non-materialised VALUES CTE as a co-routine, quadratic here.
        self.cte = "" if pg else "MATERIALIZED "
        self.unflattened = "" if pg else " LIMIT -1"

    def opened(self, stock: str) -> str:
        """The values of a new alert's columns after ``product_id, sku, name``."""
        return f"{self.greatest}({stock}, 0), {{thr}}, {self.now}, 'pending', 0, ''"

    def snapshot(self, p: str) -> str:
        """The deletion audit's JSON snapshot of product row ``p``."""
        names = ("id", "sku", "name", "price", "stock", "low_stock_threshold", "created_at",
                 "updated_at")  # fmt: skip
        if self.pg:
            pairs = ", ".join(f"'{n}', {p}.{n}" + ("::text" if n == "price" else "") for n in names)
            return f"json_build_object({pairs})::jsonb"
        pairs = ", ".join(
            f"'{n}', " + (f"printf('%.2f', {p}.{n})" if n == "price" else f"{p}.{n}") for n in names
        )
        return f"json_object({pairs})"


# --- per-table statements (the VALUES form; SQLite's staged forms) -----------------------
#
# ``v`` is the input relation; ``join`` matches it to an existing product row ``{p}``
# (``{p}.sku = v.sku``, or ``{p}.id = v.pid`` when staging resolved the ids).


def levels_statement(d: Dialect, changes: str) -> str:
    """Add each ``delta`` of ``changes`` (``SELECT ... AS pid, ... AS delta``) at the default location.
    SQLite would flatten the derived table and scan the levels in the middle of the join
    (a full scan per input row): ``LIMIT -1`` keeps it a table of its own, joined to the
    levels by product; the unary plus leaves the location's index alone."""
    return (
        "UPDATE app_stocklevel SET quantity = app_stocklevel.quantity + x.delta "
        f"FROM ({changes}{d.unflattened}) AS x WHERE app_stocklevel.product_id = x.pid "
        f"AND +app_stocklevel.location_id = {d.main}"
    )


def map_statements(d: Dialect, join: str) -> list[str]:
    """set_prices + adjust_stock: ``v(sku, price, delta)``."""
    src = f"FROM v CROSS JOIN app_product p WHERE {join.format(p='p')}"
    thr = "p.low_stock_threshold"
    return [
        f"INSERT INTO {HISTORY} SELECT p.id, p.sku, p.name, p.price, v.price, {d.now}, 'raw' "
        f"{src} AND p.price <> v.price",
        f"INSERT INTO {LEDGER} SELECT p.id, {d.main}, p.sku, v.delta, p.stock + v.delta, '', "
        f"{d.now}, 'raw' {src} AND v.delta <> 0",
        f"INSERT INTO {ALERT} SELECT p.id, p.sku, p.name, "
        + d.opened("p.stock + v.delta").format(thr=thr)
        + f" {src} AND p.stock >= {thr} AND p.stock + v.delta < {thr} AND "
        + NOT_OPEN.format(id="p.id"),
        f"UPDATE app_stockalert SET resolved_at = {d.now} WHERE resolved_at IS NULL "
        f"AND location_id IS NULL AND product_id IN (SELECT p.id {src} "
        f"AND p.stock < {thr} AND p.stock + v.delta >= {thr})",
        levels_statement(d, f"SELECT p.id AS pid, v.delta AS delta {src} AND v.delta <> 0"),
        "UPDATE app_product SET price = v.price, stock = app_product.stock + v.delta, "
        f"updated_at = {d.now} FROM v WHERE {join.format(p='app_product')} "
        "AND (app_product.price <> v.price OR v.delta <> 0)",
    ]


def upsert_statements(d: Dialect, join: str, new: str, missing: str) -> list[str]:
    """upsert_products: ``v(sku, name, price, stock)``. ``new`` matches a product row ``p``
    inserted by this run, ``missing`` an input row without a product (before the insert)."""
    src = f"FROM v CROSS JOIN app_product p WHERE {join.format(p='p')}"
    fresh = f"FROM v CROSS JOIN app_product p WHERE {new}"
    thr = "p.low_stock_threshold"
    return [
        f"INSERT INTO {HISTORY} SELECT p.id, p.sku, v.name, p.price, v.price, {d.now}, 'raw' "
        f"{src} AND p.price <> v.price",
        f"INSERT INTO {LEDGER} SELECT p.id, {d.main}, p.sku, v.stock - p.stock, v.stock, '', "
        f"{d.now}, 'raw' {src} AND v.stock <> p.stock",
        f"INSERT INTO {ALERT} SELECT p.id, p.sku, v.name, "
        + d.opened("v.stock").format(thr=thr)
        + f" {src} AND p.stock >= {thr} AND v.stock < {thr} AND "
        + NOT_OPEN.format(id="p.id"),
        f"UPDATE app_stockalert SET resolved_at = {d.now} WHERE resolved_at IS NULL "
        f"AND location_id IS NULL AND product_id IN (SELECT p.id {src} "
        f"AND p.stock < {thr} AND v.stock >= {thr})",
        levels_statement(
            d, f"SELECT p.id AS pid, v.stock - p.stock AS delta {src} AND v.stock <> p.stock"
        ),
        "UPDATE app_product SET name = v.name, price = v.price, stock = v.stock, "
        f"updated_at = {d.now} FROM v WHERE {join.format(p='app_product')} "
        "AND (app_product.name <> v.name OR app_product.price <> v.price "
        "OR app_product.stock <> v.stock)",
        "INSERT INTO app_product (sku, name, price, stock, low_stock_threshold, created_at, "
        f"updated_at) SELECT v.sku, v.name, v.price, v.stock, {d.threshold}, {d.now}, {d.now} "
        f"FROM v WHERE {missing}",
        f"INSERT INTO {LEDGER} SELECT p.id, {d.main}, p.sku, p.stock, p.stock, "
        f"'initial stock', {d.now}, 'raw' {fresh} AND p.stock <> 0",
        "INSERT INTO app_stocklevel (product_id, location_id, quantity) "
        f"SELECT p.id, {d.main}, p.stock {fresh} AND p.stock <> 0",
        f"INSERT INTO {ALERT} SELECT p.id, p.sku, p.name, "
        + d.opened("p.stock").format(thr=thr)
        + f" {fresh} AND p.stock < {thr}",
    ]


def delete_statements(d: Dialect, ids: str) -> list[str]:
    """delete_products: ``ids`` selects the doomed products' ids."""
    return [
        f"INSERT INTO {AUDIT} SELECT 'app.Product', CAST(p.id AS TEXT), "
        f"p.name || ' (' || p.sku || ')', {d.snapshot('p')}, {d.now}, 'raw' "
        f"FROM app_product p WHERE p.id IN {ids}",
        f"UPDATE app_stockalert SET resolved_at = COALESCE(resolved_at, {d.now}), "
        f"product_id = NULL WHERE product_id IN {ids}",
        *(
            f"UPDATE {table} SET product_id = NULL WHERE product_id IN {ids}"
            for table in ("app_pricehistory", "app_stockmovement", "app_reservation")
        ),
        f"DELETE FROM app_stocklevel WHERE product_id IN {ids}",
        f"DELETE FROM app_product WHERE id IN {ids}",
    ]


def adjust_statements(d: Dialect, select: str, new_price: Callable[[str], str]) -> list[str]:
    return [
        f"INSERT INTO {HISTORY} SELECT p.id, p.sku, p.name, p.price, {new_price('p.price')}, "
        f"{d.now}, 'raw' FROM app_product p WHERE {select.format(p='p')} "
        f"AND {new_price('p.price')} <> p.price",
        f"UPDATE app_product SET price = {new_price('price')}, updated_at = {d.now} "
        f"WHERE {select.format(p='app_product')} AND {new_price('price')} <> price",
    ]


# --- PostgreSQL: one statement --------------------------------------------------------------


def pg_map_statement(d: Dialect, v: str) -> str:
    return f"""
WITH u AS (
  UPDATE app_product p SET price = v.price, stock = p.stock + v.delta, updated_at = now()
  FROM {v} JOIN app_product o ON o.sku = v.sku
  WHERE p.id = o.id AND (o.price <> v.price OR v.delta <> 0)
  RETURNING p.id, p.sku, p.name, o.price AS old_price, p.price, o.stock AS old_stock, p.stock,
            p.low_stock_threshold AS thr
), h AS (
  INSERT INTO {HISTORY}
  SELECT id, sku, name, old_price, price, now(), 'raw' FROM u WHERE old_price <> price
), l AS (
  INSERT INTO {LEDGER}
  SELECT id, {d.main}, sku, stock - old_stock, stock, '', now(), 'raw' FROM u
  WHERE stock <> old_stock
), lv AS (
  UPDATE app_stocklevel s SET quantity = s.quantity + u.stock - u.old_stock FROM u
  WHERE s.product_id = u.id AND s.location_id = {d.main} AND u.stock <> u.old_stock
), ao AS (
  INSERT INTO {ALERT}
  SELECT id, sku, name, {d.opened("stock").format(thr="thr")} FROM u
  WHERE old_stock >= thr AND stock < thr AND {NOT_OPEN.format(id="u.id")}
), ar AS (
  UPDATE app_stockalert a SET resolved_at = now() FROM u
  WHERE a.product_id = u.id AND a.location_id IS NULL AND a.resolved_at IS NULL
    AND u.old_stock < u.thr AND u.stock >= u.thr
)
SELECT count(*) FROM u"""


def pg_upsert_statement(d: Dialect, v: str) -> str:
    staged = "" if v == "v" else f"v AS MATERIALIZED (SELECT * FROM {v}), "
    return f"""
WITH {staged}u AS (
  UPDATE app_product p SET name = v.name, price = v.price, stock = v.stock, updated_at = now()
  FROM v JOIN app_product o ON o.sku = v.sku
  WHERE p.id = o.id AND (o.name <> v.name OR o.price <> v.price OR o.stock <> v.stock)
  RETURNING p.id, p.sku, p.name, o.price AS old_price, p.price, o.stock AS old_stock, p.stock,
            p.low_stock_threshold AS thr
), n AS (
  INSERT INTO app_product (sku, name, price, stock, low_stock_threshold, created_at, updated_at)
  SELECT v.sku, v.name, v.price, v.stock, {d.threshold}, now(), now() FROM v
  WHERE NOT EXISTS (SELECT 1 FROM app_product o WHERE o.sku = v.sku)
  RETURNING id, sku, name, stock, low_stock_threshold AS thr
), h AS (
  INSERT INTO {HISTORY}
  SELECT id, sku, name, old_price, price, now(), 'raw' FROM u WHERE old_price <> price
), l AS (
  INSERT INTO {LEDGER}
  SELECT id, {d.main}, sku, stock - old_stock, stock, '', now(), 'raw' FROM u
  WHERE stock <> old_stock
  UNION ALL
  SELECT id, {d.main}, sku, stock, stock, 'initial stock', now(), 'raw' FROM n WHERE stock <> 0
), lv AS (
  UPDATE app_stocklevel s SET quantity = s.quantity + u.stock - u.old_stock FROM u
  WHERE s.product_id = u.id AND s.location_id = {d.main} AND u.stock <> u.old_stock
), ln AS (
  INSERT INTO app_stocklevel (product_id, location_id, quantity)
  SELECT id, {d.main}, stock FROM n WHERE stock <> 0
), ao AS (
  INSERT INTO {ALERT}
  SELECT id, sku, name, {d.opened("stock").format(thr="thr")} FROM u
  WHERE old_stock >= thr AND stock < thr AND {NOT_OPEN.format(id="u.id")}
  UNION ALL
  SELECT id, sku, name, {d.opened("stock").format(thr="thr")} FROM n WHERE stock < thr
), ar AS (
  UPDATE app_stockalert a SET resolved_at = now() FROM u
  WHERE a.product_id = u.id AND a.location_id IS NULL AND a.resolved_at IS NULL
    AND u.old_stock < u.thr AND u.stock >= u.thr
)
SELECT (SELECT count(*) FROM u), (SELECT count(*) FROM n)"""


def pg_delete_statement(d: Dialect, v: str) -> str:
    nulls = ",\n".join(
        f"x{i} AS (UPDATE {table} x SET product_id = NULL FROM d WHERE x.product_id = d.id)"
        for i, table in enumerate(("app_pricehistory", "app_stockmovement", "app_reservation"))
    )
    return f"""
WITH d AS (
  DELETE FROM app_product p USING {v} WHERE p.sku = v.sku RETURNING p.*
), a AS (
  UPDATE app_stockalert a SET resolved_at = COALESCE(a.resolved_at, now()), product_id = NULL
  FROM d WHERE a.product_id = d.id
), {nulls}, lv AS (
  DELETE FROM app_stocklevel s USING d WHERE s.product_id = d.id
), au AS (
  INSERT INTO {AUDIT}
  SELECT 'app.Product', d.id::text, d.name || ' (' || d.sku || ')', {d.snapshot("d")}, now(),
         'raw' FROM d
)
SELECT count(*) FROM d"""


def pg_adjust_statement(d: Dialect, select: str, new_price: Callable[[str], str]) -> str:
    return f"""
WITH u AS (
  UPDATE app_product p SET price = {new_price("o.price")}, updated_at = now()
  FROM app_product o
  WHERE o.id = p.id AND {select.format(p="o")} AND {new_price("o.price")} <> o.price
  RETURNING p.id, p.sku, p.name, o.price AS old_price, p.price
)
INSERT INTO {HISTORY} SELECT id, sku, name, old_price, price, now(), 'raw' FROM u"""


# --- the forms ------------------------------------------------------------------------------


def parse_csv(text: str) -> list[list[str]]:
    """The supplier CSV's data rows (``sku,name,price,stock``), as text."""
    rows = csv.reader(io.StringIO(text))
    next(rows)
    return list(rows)


def quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def values_cte(d: Dialect, columns: str, rows) -> str:
    return f"WITH v({columns}) AS {d.cte}(VALUES {','.join(rows)}) "


class Limits:
    """The limit forms of each workload on one connection; each ``form(data)`` runs in
    one transaction and returns its duration in seconds."""

    def __init__(self, connection, location: str, threshold: int, verbose: bool = False) -> None:
        connection.ensure_connection()
        self.raw = connection.connection
        self.pg = connection.vendor == "postgresql"
        self.d = Dialect(self.pg, location, threshold)
        self.verbose = verbose
        self.hash_joins = True

    def forms(self, workload: str) -> dict[str, Callable[..., float]]:
        if workload == "adjust_prices":
            forms = {"steps": self.adjust_steps}
            return {**forms, "cte": self.adjust_cte} if self.pg else forms
        name = {"delete_products": "delete"}.get(workload, workload)
        staged = ("array", "copy") if self.pg else ("json", "executemany")
        forms = {form: getattr(self, f"{name}_{form}") for form in ("values", *staged)}
        if self.pg:
            forms |= {f"{form}-keyorder": self._key_order(forms[form]) for form in staged}
        return forms

    def _key_order(self, form: Callable[..., float]) -> Callable[..., float]:
        """``form`` with hash joins off for its transaction (see the module's docstring)."""

        def run(data) -> float:
            self.hash_joins = False
            try:
                return form(data)
            finally:
                self.hash_joins = True

        return run

    # -- plumbing

    def _cursor(self):
        if self.pg:
            import psycopg

            return psycopg.Cursor(self.raw)  # server-side binding: arrays as parameters
        return self.raw.cursor()

    def _run(self, body: Callable[[object], None]) -> float:
        start = time.perf_counter()
        cursor = self._cursor()
        cursor.execute("BEGIN" if self.pg else "BEGIN IMMEDIATE")
        try:
            if not self.hash_joins:
                cursor.execute("SET LOCAL enable_hashjoin = off")
            body(cursor)
            self._timed(cursor, "COMMIT")
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        finally:
            cursor.close()
        return time.perf_counter() - start

    def _timed(self, cursor, sql: str, params=None) -> None:
        t = time.perf_counter()
        if params is None:
            cursor.execute(sql)
        else:
            cursor.execute(sql, params)
        if self.verbose:
            flat = " ".join(sql.split())
            print(f"      {time.perf_counter() - t:.3f}s {flat[:50]}...{flat[-70:]}")

    def _many(self, cursor, statements: list[str], prefix: str = "") -> None:
        for sql in statements:
            self._timed(cursor, prefix + sql)

    def _sqlite_stage(self, cursor, columns: str, fill: Callable[[], None]) -> None:
        """The temporary table ``v(columns, pid)``, filled by ``fill``, then each row's
        product id resolved (one statement)."""
        cursor.execute("DROP TABLE IF EXISTS temp.v")
        cursor.execute(f"CREATE TEMP TABLE v ({columns}, pid INTEGER)")
        fill()
        self._timed(
            cursor, "UPDATE v SET pid = (SELECT p.id FROM app_product p WHERE p.sku = v.sku)"
        )

    def _pg_copy(self, cursor, columns: str, text: str, options: str = "") -> None:
        cursor.execute(f"CREATE TEMP TABLE v ({columns}) ON COMMIT DROP")
        t = time.perf_counter()
        with cursor.copy(f"COPY v FROM STDIN {options}") as copy:
            copy.write(text)
        if self.verbose:
            print(f"      {time.perf_counter() - t:.3f}s COPY")
        self._timed(cursor, "ANALYZE v")

    # -- map: (prices, deltas), two SKU -> value maps with the same keys

    def map_values(self, data) -> float:
        prices, deltas = data

        def body(cursor):
            num, integer = ("::numeric(12,2)", "::integer") if self.pg else ("", "")
            rows = (f"('{k}',{v}{num},{deltas[k]}{integer})" for k, v in prices.items())
            prefix = values_cte(self.d, "sku, price, delta", rows)
            self._many(cursor, map_statements(self.d, "{p}.sku = v.sku"), prefix)

        return self._run(body)

    def map_array(self, data) -> float:
        prices, deltas = data

        def body(cursor):
            v = "unnest(%s::text[], %s::numeric[], %s::int[]) AS v(sku, price, delta)"
            params = [list(prices), list(prices.values()), list(deltas.values())]
            self._timed(cursor, pg_map_statement(self.d, v), params)

        return self._run(body)

    def map_copy(self, data) -> float:
        prices, deltas = data

        def body(cursor):
            text = "".join(f"{k}\t{v}\t{deltas[k]}\n" for k, v in prices.items())
            self._pg_copy(cursor, "sku text, price numeric, delta int", text)
            self._timed(cursor, pg_map_statement(self.d, "v"))

        return self._run(body)

    def map_json(self, data) -> float:
        prices, deltas = data

        def body(cursor):
            payload = json.dumps([[k, v, deltas[k]] for k, v in prices.items()])
            self._sqlite_stage(
                cursor,
                "sku TEXT, price NUMERIC, delta INTEGER",
                lambda: self._timed(
                    cursor,
                    "INSERT INTO v (sku, price, delta) SELECT value->>0, value->>1, value->>2 "
                    "FROM json_each(?)",
                    [payload],
                ),
            )
            self._many(cursor, map_statements(self.d, "{p}.id = v.pid"))

        return self._run(body)

    def map_executemany(self, data) -> float:
        prices, deltas = data

        def body(cursor):
            self._sqlite_stage(
                cursor,
                "sku TEXT, price NUMERIC, delta INTEGER",
                lambda: cursor.executemany(
                    "INSERT INTO v (sku, price, delta) VALUES (?, ?, ?)",
                    ((k, v, deltas[k]) for k, v in prices.items()),
                ),
            )
            self._many(cursor, map_statements(self.d, "{p}.id = v.pid"))

        return self._run(body)

    # -- upsert: the supplier's CSV text

    def upsert_values(self, text: str) -> float:
        def body(cursor):
            cursor.execute("SELECT COALESCE(MAX(id), 0) FROM app_product")
            last = cursor.fetchone()[0]  # products above it are this run's
            num, integer = ("::numeric(12,2)", "::integer") if self.pg else ("", "")
            rows = (
                f"('{s}',{quote(name)},{price}{num},{stock}{integer})"
                for s, name, price, stock in parse_csv(text)
            )
            prefix = values_cte(self.d, "sku, name, price, stock", rows)
            statements = upsert_statements(
                self.d,
                "{p}.sku = v.sku",
                new=f"p.sku = v.sku AND p.id > {last}",
                missing="NOT EXISTS (SELECT 1 FROM app_product o WHERE o.sku = v.sku)",
            )
            self._many(cursor, statements, prefix)

        return self._run(body)

    def upsert_array(self, text: str) -> float:
        def body(cursor):
            params = [list(column) for column in zip(*parse_csv(text), strict=True)]
            v = (
                "unnest(%s::text[], %s::text[], %s::text[]::numeric[], %s::text[]::int[]) "
                "AS v(sku, name, price, stock)"
            )
            self._timed(cursor, pg_upsert_statement(self.d, v), params)

        return self._run(body)

    def upsert_copy(self, text: str) -> float:
        def body(cursor):  # the server parses the CSV
            columns = "sku text, name text, price numeric, stock int"
            self._pg_copy(cursor, columns, text, "WITH (FORMAT csv, HEADER true)")
            self._timed(cursor, pg_upsert_statement(self.d, "v"))

        return self._run(body)

    def _sqlite_upsert(self, cursor, fill) -> None:
        self._sqlite_stage(cursor, "sku TEXT, name TEXT, price NUMERIC, stock INTEGER", fill)
        self._many(
            cursor,
            upsert_statements(
                self.d,
                "{p}.id = v.pid",
                new="v.pid IS NULL AND p.sku = v.sku",
                missing="v.pid IS NULL",
            ),
        )

    def upsert_json(self, text: str) -> float:
        def body(cursor):
            payload = json.dumps(parse_csv(text))
            self._sqlite_upsert(
                cursor,
                lambda: self._timed(
                    cursor,
                    "INSERT INTO v (sku, name, price, stock) SELECT value->>0, value->>1, "
                    "value->>2, value->>3 FROM json_each(?)",
                    [payload],
                ),
            )

        return self._run(body)

    def upsert_executemany(self, text: str) -> float:
        def body(cursor):
            rows = csv.reader(io.StringIO(text))
            next(rows)
            self._sqlite_upsert(
                cursor,
                lambda: cursor.executemany(
                    "INSERT INTO v (sku, name, price, stock) VALUES (?, ?, ?, ?)", rows
                ),
            )

        return self._run(body)

    # -- delete: a list of SKUs

    def delete_values(self, skus: list[str]) -> float:
        def body(cursor):
            prefix = values_cte(self.d, "sku", (f"('{s}')" for s in skus))
            ids = "(SELECT p.id FROM v CROSS JOIN app_product p WHERE p.sku = v.sku)"
            self._many(cursor, delete_statements(self.d, ids), prefix)

        return self._run(body)

    def delete_array(self, skus: list[str]) -> float:
        def body(cursor):
            v = "unnest(%s::text[]) AS v(sku)"
            self._timed(cursor, pg_delete_statement(self.d, v), [skus])

        return self._run(body)

    def delete_copy(self, skus: list[str]) -> float:
        def body(cursor):
            self._pg_copy(cursor, "sku text", "\n".join(skus) + "\n")
            self._timed(cursor, pg_delete_statement(self.d, "v"))

        return self._run(body)

    def delete_json(self, skus: list[str]) -> float:
        def body(cursor):
            payload = json.dumps(skus)
            self._sqlite_stage(
                cursor,
                "sku TEXT",
                lambda: self._timed(
                    cursor, "INSERT INTO v (sku) SELECT value FROM json_each(?)", [payload]
                ),
            )
            self._many(cursor, delete_statements(self.d, "(SELECT pid FROM v)"))

        return self._run(body)

    def delete_executemany(self, skus: list[str]) -> float:
        def body(cursor):
            self._sqlite_stage(
                cursor,
                "sku TEXT",
                lambda: cursor.executemany("INSERT INTO v (sku) VALUES (?)", ((s,) for s in skus)),
            )
            self._many(cursor, delete_statements(self.d, "(SELECT pid FROM v)"))

        return self._run(body)

    # -- adjust_prices: (prefix, percent, round_to)

    def _adjust(self, prefix: str, percent: Decimal, round_to: Decimal):
        """The selection (products whose SKU starts with ``prefix``) and the new price of
        a price expression: ``old x (1 + percent/100)`` rounded half-up to ``round_to``."""
        if self.pg:
            select = f"{{p}}.sku LIKE '{prefix}%'"
            factor = (100 + percent) / 100

            def new_price(x: str) -> str:
                return f"ROUND({x} * {factor} / {round_to}) * {round_to}"

            return select, new_price
        # SQLite stores prices as REAL: exact integer arithmetic on cents instead.
        successor = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        select = f"{{p}}.sku >= '{prefix}' AND {{p}}.sku < '{successor}'"
        scaled = 100 + percent
        step = round_to * 100
        assert scaled == int(scaled) and step == int(step), "whole percent and cents only"
        scaled, step = int(scaled), int(step)

        def new_price(x: str) -> str:  # positive prices: half-up is + half, then floor
            cents = f"CAST(ROUND({x} * 100) AS INTEGER)"
            return f"((({cents} * {scaled} + {50 * step}) / {100 * step}) * {step} / 100.0)"

        return select, new_price

    def adjust_steps(self, data) -> float:
        def body(cursor):
            self._many(cursor, adjust_statements(self.d, *self._adjust(*data)))

        return self._run(body)

    def adjust_cte(self, data) -> float:
        def body(cursor):
            self._timed(cursor, pg_adjust_statement(self.d, *self._adjust(*data)))

        return self._run(body)
