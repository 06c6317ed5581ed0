#!/usr/bin/env python
"""Read paths at scale: product page, product API, history, price-at, ledger, dashboard.

    python benchmarks/readpaths.py [--products 1000000] [--history 10000000] [--reuse]
    python benchmarks/readpaths.py --quick            # 10,000 products, 100,000 rows each

It builds (or with ``--reuse`` keeps) a PostgreSQL database (``BENCH_PG_DB``, default
``stockpipe_bench_readpaths``) with set-based SQL: products with stock levels at two
locations, price history and stock ledger rows (about 10 per product; every 1,000th product
has 1,000 of each, ten products a fiftieth of the table: deep pages; three in ten products
are in a price reduction of the last 30 days, one in ten in a stepped one, so the Omnibus
walk has work). Then it starts gunicorn as ``deploy/run`` does (``deploy/gunicorn.conf.py``,
production settings, Redis cache; no nginx), warms it, and sends ``--requests`` sequential
requests per endpoint and product choice (uniform over the products, and a hot set of
``--hot`` products), printing p50/p99 against the 50 ms target.

In this process, against the same database, one request per endpoint runs under
``CaptureQueriesContext``; each SELECT it made is run again as ``EXPLAIN (ANALYZE, BUFFERS)``
and saved to ``benchmarks/results/readpaths-explain/<endpoint>.txt``. A sequential scan of a
history or ledger table is reported (and fails ``--check``, as does a p99 over 50 ms).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from urllib.parse import urlparse

from common import PG_ADMIN, ROOT, free_port, gunicorn, production_env, recreate_postgres

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench_readpaths")
EXPLAIN_DIR = ROOT / "benchmarks" / "results" / "readpaths-explain"
TARGET_P99_MS = 50.0
HISTORY_TABLES = ("app_pricehistory", "app_stockmovement")  # a scan of these fails --check
# Reported too (alerts: a scan is the right plan while the table is small, as in --quick).
BIG_TABLES = ("app_product", "app_stocklevel", "app_stockalert", *HISTORY_TABLES)
DEEP_EVERY = 1000  # every 1,000th product has DEEP_ROWS rows of each history
DEEP_ROWS = 1000
VERY_DEEP = 10  # products with a fiftieth of a table each (at most 20,000 rows)
PAGE = 50
DECLARE = re.compile(r"^DECLARE \S+ NO SCROLL CURSOR (WITH|WITHOUT) HOLD FOR ")


def sku(i: int) -> str:
    return f"RP-{i:07d}"


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Shape:
    """Sizes and the per-product row counts derived from them (SQL and Python agree)."""

    products: int
    history: int
    ledger: int

    def very_deep_rows(self, rows: int) -> int:
        return min(20_000, rows // 50)

    def very_deep_ids(self) -> list[int]:
        step = self.products // VERY_DEEP
        return [k * step + 2 for k in range(VERY_DEEP)]  # class 2: a stepped reduction

    def deep_ids(self) -> list[int]:
        return list(range(DEEP_EVERY, self.products + 1, DEEP_EVERY))

    def mean_rows(self, rows: int) -> float:
        deep = len(self.deep_ids())
        rest = rows - deep * DEEP_ROWS - VERY_DEEP * self.very_deep_rows(rows)
        mean = rest / (self.products - deep - VERY_DEEP)
        if mean < 2:
            raise SystemExit(f"{rows:,} rows are too few for {self.products:,} products")
        return mean


# Row counts, prices and times as SQL functions in pg_temp (gone with the session), so the
# products' price and stock are exactly what their history and ledger end in.
FUNCTIONS = """
CREATE FUNCTION pg_temp.u(i bigint, salt bigint) RETURNS float8 IMMUTABLE LANGUAGE sql AS
$$ SELECT (((i + salt * 104729) * 2654435761) %% 4294967296) / 4294967296.0 $$;

CREATE FUNCTION pg_temp.rows_of(i bigint, salt bigint, mean float8, very_deep_rows int)
RETURNS int IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE WHEN i %% %(step)s = 2 AND i / %(step)s < %(very_deep)s THEN very_deep_rows
              WHEN i %% %(deep_every)s = 0 THEN %(deep_rows)s
              ELSE 2 + floor(pg_temp.u(i, salt) * (2 * mean - 3))::int END $$;

CREATE FUNCTION pg_temp.base(i bigint) RETURNS numeric IMMUTABLE LANGUAGE sql AS
$$ SELECT (1000 + (i * 7919) %% 99000) / 100.0 $$;

-- The price after the k-th change of product i with c changes (k = 0: the launch price).
-- Classes (i %% 10): 0, 1 reduced by 20 %% in the last 30 days; 2 reduced in two steps
-- (-10 %%, -20 %%) in the last 30 days; 3 raised recently; others: last change older.
CREATE FUNCTION pg_temp.price(i bigint, k int, c int) RETURNS numeric IMMUTABLE LANGUAGE sql AS $$
  SELECT round(pg_temp.base(i) * CASE
    WHEN k = 0 THEN 1
    WHEN i %% 10 IN (0, 1, 2) AND k = c THEN 0.8
    WHEN i %% 10 = 2 AND k = c - 1 THEN 0.9
    WHEN i %% 10 = 3 AND k = c THEN 1.15
    WHEN i %% 10 IN (0, 1, 3) AND k = c - 1 THEN 1
    WHEN i %% 10 = 2 AND k = c - 2 THEN 1
    ELSE 0.9 + ((i * 31 + k * 17) %% 21) / 100.0 END, 2) $$;

CREATE FUNCTION pg_temp.changed_at(i bigint, k int, c int, now timestamptz)
RETURNS timestamptz IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE
    WHEN i %% 10 IN (0, 1, 2, 3) AND k = c THEN now - make_interval(days => (1 + (i * 7) %% 20)::int)
                                                   - make_interval(mins => (i %% 1440)::int)
    WHEN i %% 10 = 2 AND k = c - 1 THEN now - make_interval(days => (5 + (i * 7) %% 20)::int)
    ELSE now - interval '730 days' + (k - pg_temp.u(i, k)) * interval '690 days' / c END $$;

-- Stock: at MAIN (1 %% of products below the threshold of 5), and at NORTH for i %% 10 = 5.
CREATE FUNCTION pg_temp.main_qty(i bigint) RETURNS int IMMUTABLE LANGUAGE sql AS
$$ SELECT CASE WHEN i %% 100 = 0 THEN 2 ELSE 5 + ((i * 37) %% 500)::int END $$;
CREATE FUNCTION pg_temp.north_qty(i bigint) RETURNS int IMMUTABLE LANGUAGE sql AS
$$ SELECT CASE WHEN i %% 10 = 5 THEN 20 + (i %% 30)::int ELSE 0 END $$;

-- The product's total after its k-th ledger row (of c): row 1 of a NORTH product brings
-- its NORTH stock, the rest move MAIN; the last row leaves MAIN at main_qty.
CREATE FUNCTION pg_temp.after(i bigint, k int, c int) RETURNS int IMMUTABLE LANGUAGE sql AS $$
  SELECT CASE WHEN k = 0 THEN 0 ELSE pg_temp.north_qty(i) + CASE
    WHEN k = 1 AND i %% 10 = 5 THEN 0
    WHEN k = c THEN pg_temp.main_qty(i)
    ELSE 50 + ((i * 13 + k * 29) %% 200)::int END END $$;
"""

LOAD = [
    (
        "locations",
        """INSERT INTO app_location (code, name, active, created_at)
           VALUES ('MAIN', 'Main warehouse', true, now() - interval '3 years'),
                  ('NORTH', 'North shop', true, now() - interval '3 years')
           ON CONFLICT (code) DO NOTHING""",
    ),
    (
        "products",
        """INSERT INTO app_product (id, sku, name, price, stock, low_stock_threshold,
                                   created_at, updated_at)
           SELECT i, 'RP-' || lpad(i::text, 7, '0'), 'Product ' || md5(i::text),
                  pg_temp.price(i, pg_temp.rows_of(i, 1, %(hmean)s, %(hdeep)s),
                                pg_temp.rows_of(i, 1, %(hmean)s, %(hdeep)s)),
                  pg_temp.main_qty(i) + pg_temp.north_qty(i), 5,
                  now() - interval '731 days', now() - make_interval(mins => (i %% 50000)::int)
           FROM generate_series(1, %(products)s) AS i""",
    ),
    (
        "stock levels",
        """INSERT INTO app_stocklevel (product_id, location_id, quantity)
           SELECT p.id, l.id, CASE l.code WHEN 'MAIN' THEN pg_temp.main_qty(p.id)
                                          ELSE pg_temp.north_qty(p.id) END
           FROM app_product p JOIN app_location l
             ON l.code = 'MAIN' OR (l.code = 'NORTH' AND p.id %% 10 = 5)
           ORDER BY p.id, l.id""",
    ),
    (
        "price history",
        """INSERT INTO app_pricehistory (source, sku, name, old_price, new_price, changed_at,
                                        product_id)
           SELECT 'bench', p.sku, p.name, pg_temp.price(p.id, k - 1, c), pg_temp.price(p.id, k, c),
                  pg_temp.changed_at(p.id, k, c, now()), p.id
           FROM app_product p,
                LATERAL (SELECT pg_temp.rows_of(p.id, 1, %(hmean)s, %(hdeep)s) AS c) n,
                LATERAL generate_series(1, n.c) AS k
           ORDER BY 6""",
    ),
    (
        "stock ledger",
        """INSERT INTO app_stockmovement (source, sku, delta, stock_after, reason, created_at,
                                         product_id, location_id)
           SELECT 'bench', p.sku, pg_temp.after(p.id, k, c) - pg_temp.after(p.id, k - 1, c),
                  pg_temp.after(p.id, k, c), 'benchmark',
                  pg_temp.changed_at(p.id + 5, k, c, now()), p.id,
                  CASE WHEN k = 1 AND p.id %% 10 = 5 THEN north.id ELSE main.id END
           FROM app_product p,
                LATERAL (SELECT pg_temp.rows_of(p.id, 2, %(lmean)s, %(ldeep)s) AS c) n,
                LATERAL generate_series(1, n.c) AS k,
                (SELECT id FROM app_location WHERE code = 'MAIN') main,
                (SELECT id FROM app_location WHERE code = 'NORTH') north
           ORDER BY 6""",
    ),
    (
        "alerts",
        """INSERT INTO app_stockalert (product_id, sku, name, stock, threshold, opened_at,
                                      resolved_at, delivery_status, attempts, last_error)
           SELECT id, sku, name, 2, 5, now() - make_interval(hours => (id %% 2000)::int),
                  CASE WHEN id %% 100 = 0 THEN NULL
                       ELSE now() - make_interval(hours => (id %% 1000)::int) END,
                  'sent', 1, ''
           FROM app_product WHERE id %% 50 = 0 ORDER BY 6""",
    ),
    (
        "reservations",
        """INSERT INTO app_reservation (source, product_id, sku, location_id, quantity,
                                       reference, status, expires_at, created_at)
           SELECT 'bench', p.id, p.sku, l.id, 1, 'order-' || p.id, 'active',
                  now() + interval '1 day' + make_interval(mins => (p.id %% 5000)::int),
                  now() - interval '1 hour'
           FROM app_product p, app_location l WHERE l.code = 'MAIN' AND p.id %% 200 = 3""",
    ),
    # The counters app.services.reservations keeps with every hold (the product page reads
    # the holds of a product whose counter says it has some).
    (
        "held units",
        """UPDATE app_product p SET reserved = h.n
           FROM (SELECT product_id, sum(quantity) AS n FROM app_reservation
                 WHERE status = 'active' GROUP BY product_id) h
           WHERE h.product_id = p.id""",
    ),
    (
        "held at levels",
        """UPDATE app_stocklevel s SET reserved = h.n
           FROM (SELECT product_id, location_id, sum(quantity) AS n FROM app_reservation
                 WHERE status = 'active' AND location_id IS NOT NULL
                 GROUP BY product_id, location_id) h
           WHERE h.product_id = s.product_id AND h.location_id = s.location_id""",
    ),
]

TABLES = ("app_product", "app_stocklevel", "app_pricehistory", "app_stockmovement")
# Idempotent and cheap: run again on a database kept by --reuse (see restore_counters).
COUNTERS = ("held units", "held at levels")


def secondary_indexes(cursor) -> list[tuple[str, str]]:
    """(name, definition) of the indexes of the loaded tables that back no constraint."""
    cursor.execute(
        """SELECT i.indexname, i.indexdef FROM pg_indexes i
           WHERE i.schemaname = 'public' AND i.tablename = ANY(%s)
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)""",
        [list(TABLES)],
    )
    return cursor.fetchall()


def build(shape: Shape, index_build: str) -> dict[str, float]:
    """Load the data set-based; returns seconds per step. ``index_build``: ``after`` drops
    the secondary indexes of the big tables and creates them after the load, ``during``
    loads with them in place."""
    from django.db import connection

    params = {
        "products": shape.products,
        "hmean": shape.mean_rows(shape.history),
        "hdeep": shape.very_deep_rows(shape.history),
        "lmean": shape.mean_rows(shape.ledger),
        "ldeep": shape.very_deep_rows(shape.ledger),
    }
    consts = {
        "step": shape.products // VERY_DEEP,
        "very_deep": VERY_DEEP,
        "deep_every": DEEP_EVERY,
        "deep_rows": DEEP_ROWS,
    }
    times: dict[str, float] = {}
    with connection.cursor() as cursor:
        # The rows are valid by construction: skip the per-row foreign-key triggers (the
        # same for both index modes). Memory for sorts and index builds.
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("SET maintenance_work_mem = '512MB'")
        cursor.execute("SET work_mem = '256MB'")
        cursor.execute(FUNCTIONS % consts)
        indexes = secondary_indexes(cursor) if index_build == "after" else []
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        for label, sql in LOAD:
            start = time.perf_counter()
            cursor.execute(sql % params)
            times[label] = time.perf_counter() - start
            print(f"  {label:14s} {cursor.rowcount:>11,} rows {times[label]:7.1f}s", flush=True)
        start = time.perf_counter()
        for _, definition in indexes:
            cursor.execute(definition)
        if indexes:
            times["indexes"] = time.perf_counter() - start
            print(f"  {len(indexes)} indexes created in {times['indexes']:.1f}s", flush=True)
        for table in ("app_product", "app_pricehistory", "app_stockmovement"):
            cursor.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), max(id)) FROM {table}"
            )
        cursor.execute("RESET session_replication_role")
    start = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE")
    times["vacuum analyze"] = time.perf_counter() - start
    return times


def restore_counters() -> None:
    """The reservation counters, set again on a database kept by ``--reuse``: one built
    before the load set them holds its 5,000 holds with every ``Product.reserved`` at 0, and
    the product page, which reads no holds of such a product, would do less work than it
    does for those products (``recorded`` compares only the sizes)."""
    from django.db import connection

    with connection.cursor() as cursor:
        for label, sql in LOAD:
            if label in COUNTERS:
                cursor.execute(sql)


def seed_runs() -> None:
    """A few finished pipeline runs for the dashboard."""
    from app.models import PipelineRun, PipelineRunSpec

    runs = PipelineRun.objects.bulk_create(
        PipelineRun(name=f"bench {i}", status="succeeded") for i in range(50)
    )
    PipelineRunSpec.objects.bulk_create(PipelineRunSpec(run=r, spec={"steps": []}) for r in runs)


def record(shape: Shape, times: dict, index_build: str) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE bench_meta (shape jsonb, times jsonb)")
        cursor.execute(
            "INSERT INTO bench_meta VALUES (%s, %s)",
            [json.dumps(shape.__dict__), json.dumps({**times, "index_build": index_build})],
        )


def recorded(shape: Shape) -> dict | None:
    """The build times of the database if it holds ``shape`` (``--reuse``), else None."""
    import psycopg

    try:
        with psycopg.connect(database_url()) as conn:
            row = conn.execute("SELECT shape, times FROM bench_meta").fetchone()
    except psycopg.Error:
        return None
    return row[1] if row and row[0] == shape.__dict__ else None


def database_url() -> str:
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{PG_NAME}"


# --- who reads --------------------------------------------------------------------------------


def reader() -> tuple[str, str]:
    """A staff user's session id (pages) and API token (API)."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    from app.services.tokens import create_token

    user, _ = get_user_model().objects.get_or_create(
        username="bench-reader", defaults={"is_staff": True}
    )
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value, create_token(user, "readpaths")[1]


# --- endpoints --------------------------------------------------------------------------------


@dataclass
class Endpoint:
    label: str
    path: str  # with {sku}, {page}, {at}
    products: list[int]  # the uniform choice; the hot set is drawn from it
    pages: dict[int, int] | None = None  # product -> its last page (deep pages)
    hot: bool = True


def last_pages(model, ids: list[int]) -> dict[int, int]:
    from django.db.models import Count

    counts = model.objects.filter(product_id__in=ids).values("product_id").annotate(n=Count("id"))
    return {row["product_id"]: max(1, -(-row["n"] // PAGE)) for row in counts}


def endpoints(shape: Shape, only: str | None = None) -> list[Endpoint]:
    """The measured endpoints; ``only``: those whose label starts with one of these
    comma-separated prefixes (``--only "product page,dashboard"``)."""
    from app.models import PriceHistory, StockMovement

    if only:
        prefixes = tuple(p.strip().lower() for p in only.split(",") if p.strip())
        return [e for e in endpoints(shape) if e.label.lower().startswith(prefixes)]

    everyone = range(1, shape.products + 1)
    deep = shape.deep_ids() + shape.very_deep_ids()
    reduced = [i for i in everyone if i % 10 in (0, 1, 2)]
    return [
        Endpoint("product page", "/products/{sku}/", everyone),
        Endpoint("API product (prior_price)", "/api/products/{sku}", everyone),
        Endpoint("price history page 1", "/api/products/{sku}/price-history", everyone),
        Endpoint(
            "price history deep page",
            "/api/products/{sku}/price-history?page={page}",
            deep,
            last_pages(PriceHistory, deep),
        ),
        Endpoint("price-at", "/api/products/{sku}/price-at?at={at}", everyone),
        Endpoint("stock ledger page 1", "/api/products/{sku}/stock-movements", everyone),
        Endpoint(
            "stock ledger deep page",
            "/api/products/{sku}/stock-movements?page={page}",
            deep,
            last_pages(StockMovement, deep),
        ),
        Endpoint("dashboard", "/", [0], hot=False),
        # The API body carries the prior price; over reduced products only (the Omnibus
        # walk reads back to 30 days before the reduction's first step).
        Endpoint("Omnibus prior price (API, reduced)", "/api/products/{sku}", reduced),
    ]


def url_for(endpoint: Endpoint, i: int, rng: random.Random) -> str:
    at = datetime.now(UTC) - timedelta(seconds=rng.randrange(2 * 365 * 86400))
    page = endpoint.pages.get(i, 1) if endpoint.pages else 1
    return endpoint.path.format(sku=sku(i), page=page, at=at.strftime("%Y-%m-%dT%H:%M:%SZ"))


def get(base: str, path: str, headers: dict) -> float:
    """One request on a new connection (sync workers close each); milliseconds."""
    netloc = urlparse(base).netloc
    start = time.perf_counter()
    conn = http.client.HTTPConnection(netloc, timeout=30)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    elapsed = (time.perf_counter() - start) * 1000
    conn.close()
    if response.status != 200:
        raise SystemExit(f"GET {path}: {response.status} {body[:300]!r}")
    return elapsed


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def measure(base: str, headers: dict, shape: Shape, args) -> list[dict]:
    rng = random.Random(args.seed)
    rows = []
    for endpoint in endpoints(shape, args.only):
        for _ in range(args.warmup):  # this path's code, templates and connections
            get(base, url_for(endpoint, rng.choice(endpoint.products), rng), headers)
        choices = [("uniform", endpoint.products)]
        if endpoint.hot:
            choices.append(
                ("hot", rng.sample(endpoint.products, min(args.hot, len(endpoint.products))))
            )
        for mode, products in choices:
            paths = [url_for(endpoint, rng.choice(products), rng) for _ in range(args.requests)]
            times = [get(base, path, headers) for path in paths]
            # The tail's requests (which products: a long history, a cold one?).
            slowest = sorted(zip(times, paths, strict=True), reverse=True)[:3]
            row = {
                "endpoint": endpoint.label,
                "choice": mode if endpoint.hot else "-",
                "requests": len(times),
                "p50_ms": round(statistics.median(times), 1),
                "p99_ms": round(percentile(times, 0.99), 1),
                "max_ms": round(max(times), 1),
                "slowest": [[round(ms, 1), path] for ms, path in slowest],
            }
            rows.append(row)
            verdict = "ok" if row["p99_ms"] < TARGET_P99_MS else "MISSED"
            print(
                f"  {row['endpoint']:36s} {row['choice']:8s} p50 {row['p50_ms']:6.1f} ms  "
                f"p99 {row['p99_ms']:6.1f} ms  max {row['max_ms']:6.1f} ms  {verdict}",
                flush=True,
            )
            print("      slowest: " + ", ".join(f"{ms} ms {path}" for ms, path in row["slowest"]))
    return rows


# --- EXPLAIN ----------------------------------------------------------------------------------


def explain_all(shape: Shape, token: str, only: str | None = None, seed: int = 13) -> list[dict]:
    """One in-process request per endpoint (the server's code, this process's settings: no
    shared cache, so the API computes its body); every SELECT it ran is explained."""
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-reader"))
    headers = {"Authorization": f"Bearer {token}"}
    EXPLAIN_DIR.mkdir(parents=True, exist_ok=True)
    rng = random.Random(7 if seed == 13 else seed * 7)  # another seed: other, cold products
    summary = []
    for endpoint in endpoints(shape, only):
        # The worst case: the deepest product of the choice (the very deep ones are last).
        i = endpoint.products[-1] if endpoint.pages else rng.choice(endpoint.products)
        if endpoint.label.startswith("Omnibus"):
            i = shape.very_deep_ids()[0]
        path = url_for(endpoint, i, rng)
        use = headers if path.startswith("/api/") else {}
        first: list[str | None] = []  # each statement's plan as it ran first (cold reads)
        with (
            connection.execute_wrapper(partial(_explain_first, first)),
            CaptureQueriesContext(connection) as captured,
        ):
            response = client.get(path, headers=use)
        assert response.status_code == 200, (path, response.status_code)
        out, scans = [f"GET {path}\n"], []
        for n, query in enumerate(captured.captured_queries, 1):
            out.append(f"-- query {n} ({query['time']} s)\n{query['sql']}\n")
            # QuerySet.iterator() declares a server-side cursor: explain its SELECT.
            sql = DECLARE.sub("", query["sql"])
            if not sql.lstrip().upper().startswith(("SELECT", "WITH")):
                out.append("(not a SELECT: not explained)\n")
                continue
            with connection.cursor() as cursor:
                cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + sql)
                plan = "\n".join(row[0] for row in cursor.fetchall())
            cold = first[n - 1] if len(first) == len(captured.captured_queries) else None
            if cold and " read=" in cold:
                # Shared buffers "read": pages this request was the first to need.
                out.append(f"First run, before the query itself:\n{cold}\nAgain, warm:\n")
            out.append(plan + "\n")
            scans += [t for t in BIG_TABLES if f"Seq Scan on {t} " in plan + " "]
        name = endpoint.label.split(" (")[0].lower().replace(" ", "-")
        (EXPLAIN_DIR / f"{name}.txt").write_text("\n".join(out))
        summary.append(
            {
                "endpoint": endpoint.label,
                "path": path,
                "queries": len(captured.captured_queries),
                "seq_scans": sorted(set(scans)),
                "history_seq_scan": any(t in HISTORY_TABLES for t in scans),
            }
        )
        print(
            f"  {endpoint.label:36s} {len(captured.captured_queries):2d} queries  "
            f"seq scans of big tables: {', '.join(sorted(set(scans))) or 'none'}",
            flush=True,
        )
    return summary


def _explain_first(plans: list[str | None], execute, sql, params, many, context):
    """An execute wrapper: each SELECT explained (ANALYZE, BUFFERS) just before it runs, so
    the plan shows the pages it read from outside shared buffers; ``plans`` gets one entry
    per statement."""
    import psycopg

    plan = None
    select = DECLARE.sub("", sql)
    if not many and select.lstrip().upper().startswith(("SELECT", "WITH")):
        with psycopg.ClientCursor(context["connection"].connection) as cursor:
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + select, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
    plans.append(plan)
    return execute(sql, params, many, context)


# --- driver -----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--products", type=int, default=1_000_000)
    parser.add_argument("--history", type=int, default=10_000_000, help="price history rows")
    parser.add_argument("--ledger", type=int, help="ledger rows (default: --history)")
    parser.add_argument("--quick", action="store_true", help="10,000 products, 100,000 rows")
    parser.add_argument("--reuse", action="store_true", help="keep a database of this size")
    parser.add_argument("--index-build", choices=["after", "during"], default="after")
    parser.add_argument("--requests", type=int, default=200, help="per endpoint and choice")
    parser.add_argument("--warmup", type=int, default=20, help="requests per endpoint first")
    parser.add_argument("--hot", type=int, default=100, help="size of the hot set")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers")
    parser.add_argument("--port", type=int, help="gunicorn's port (default: a free one)")
    parser.add_argument("--build-only", action="store_true")
    parser.add_argument("--only", help='endpoints whose label starts with these, e.g. "dashboard"')
    parser.add_argument(
        "--seed",
        type=int,
        default=13,
        help="of the requests' products: another seed, products no earlier run read (cold)",
    )
    parser.add_argument("--check", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()
    if args.quick:
        args.products, args.history, args.requests, args.warmup = 10_000, 100_000, 50, 5
    shape = Shape(args.products, args.history, args.ledger or args.history)
    shape.mean_rows(shape.history)  # refuses impossible sizes before anything is dropped

    url = database_url()
    static = Path(tempfile.gettempdir()) / "stockpipe-readpaths-static"
    # This process: production settings on the same database, a cache of its own (so the
    # API computes its body for the EXPLAIN run); the server gets the shared Redis cache.
    env = production_env(url, STATIC_ROOT=str(static), ALLOWED_HOSTS="127.0.0.1,testserver")
    os.environ.update({**env, "CACHE_URL": "locmemcache://"})
    sys.path.insert(0, str(ROOT))
    times = recorded(shape) if args.reuse else None
    print(
        f"== PostgreSQL {PG_NAME}: {shape.products:,} products, {shape.history:,} price "
        f"history rows, {shape.ledger:,} ledger rows",
        flush=True,
    )
    if times is None:
        recreate_postgres(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    if times is None:
        start = time.perf_counter()
        times = build(shape, args.index_build)
        seed_runs()
        times["total"] = round(time.perf_counter() - start, 1)
        record(shape, times, args.index_build)
        print(f"  built in {times['total']:.1f}s (indexes {args.index_build} the load)")
    else:
        restore_counters()
        print(f"  reused (built in {times['total']:.1f}s, indexes {times['index_build']} the load)")
    if args.build_only:
        return 0
    call_command("collectstatic", interactive=False, verbosity=0)
    session, token = reader()

    print("EXPLAIN (ANALYZE, BUFFERS) of every SELECT, in this process:", flush=True)
    plans = explain_all(shape, token, args.only, args.seed)
    from django.db import connection

    connection.close()

    headers = {"Authorization": f"Bearer {token}", "Cookie": f"sessionid={session}"}
    print(
        f"gunicorn (deploy/gunicorn.conf.py, {args.workers} sync workers), "
        f"{args.requests} sequential requests per row:",
        flush=True,
    )
    with gunicorn(env, args.port or free_port(), workers=args.workers, config=True) as base:
        rows = measure(base, headers, shape, args)

    slow = [r for r in rows if r["p99_ms"] >= TARGET_P99_MS]
    scans = [p for p in plans if p["history_seq_scan"]]
    print(
        f"  => {len(rows) - len(slow)}/{len(rows)} rows with p99 < {TARGET_P99_MS:.0f} ms; "
        f"sequential scans of a history/ledger table: {len(scans)}; plans in "
        f"{EXPLAIN_DIR.relative_to(ROOT)}/",
        flush=True,
    )
    result = {"shape": shape.__dict__, "build": times, "latency": rows, "explain": plans}
    print("RESULT " + json.dumps(result))
    return 1 if args.check and (slow or scans) else 0


if __name__ == "__main__":
    sys.exit(main())
