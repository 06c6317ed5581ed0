"""Exports and catalogue benchmark: one command, limits checked in the same run.

    python benchmarks/exports.py [--db postgres|sqlite] [--n 1000000] [--requests 40] [--quick] [--check]

It creates a fresh database (PostgreSQL ``stockpipe_bench_exports`` by default), loads ``n``
products set-based (``generate_series``; a recursive CTE on SQLite) and their stock at four
locations (so the products export has four ``stock@<code>`` columns), then:

* export memory: ``GET /api/exports/products?format=csv`` and ``format=xlsx`` through the
  whole Django stack (middleware, token auth, the streaming view) in a child process each,
  consuming and discarding the streamed body; prints the child's peak RSS (``VmHWM``)
  against the 150 MB limit, its RSS before the export, the time, and for CSV the ratio to
  the practical limit, PostgreSQL's own ``COPY (SELECT ...) TO STDOUT WITH CSV`` of the same
  columns;
* catalogue pages: ``GET /products/`` with sorts, filters, a first page, a deep cursor page
  (the row at 90 % of the sort order) and a previous page, each ``--requests`` times through
  Django's test client in this process; prints p50/p99 per scenario and over all pages
  against the 200 ms limit. The totals (``/products/totals.json``, fetched by the page
  after it loads) are timed the same way and reported separately.

``--check`` exits non-zero when a limit is missed (peak memory < 150 MB, page p99 < 200 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import fresh_database_url, setup_django

ROOT = Path(__file__).resolve().parent.parent
PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench_exports")
LIMIT_MEMORY_MB = 150
LIMIT_PAGE_P99_MS = 200


# --- data -----------------------------------------------------------------------------------


def load_products(n: int) -> float:
    """``n`` products in one INSERT ... SELECT: varied prices (ties), stock (1 % below the
    threshold), names (hex), update times spread over 11 days."""
    from django.db import connection

    start = time.perf_counter()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                """
                INSERT INTO app_product (sku, name, price, stock, low_stock_threshold,
                                         created_at, updated_at)
                SELECT 'SKU-' || lpad(i::text, 7, '0'), 'Product ' || md5(i::text),
                       (10 + (i::bigint * 7919) %% 99000) / 100.0,
                       CASE WHEN i %% 100 = 0 THEN 2 ELSE 5 + (i::bigint * 37) %% 500 END, 5,
                       now() - make_interval(secs => i),
                       now() - make_interval(secs => (i::bigint * 7) %% 1000000)
                FROM generate_series(1, %s) AS i
                """,
                [n],
            )
            cursor.execute("VACUUM ANALYZE app_product")
        else:
            cursor.execute(
                """
                WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s)
                INSERT INTO app_product (sku, name, price, stock, low_stock_threshold,
                                         created_at, updated_at)
                SELECT 'SKU-' || substr('0000000' || i, -7), 'Product ' || hex(randomblob(8)),
                       (10 + (i * 7919) %% 99000) / 100.0,
                       CASE WHEN i %% 100 = 0 THEN 2 ELSE 5 + (i * 37) %% 500 END, 5,
                       datetime('now', '-' || i || ' seconds'),
                       datetime('now', '-' || ((i * 7) %% 1000000) || ' seconds')
                FROM s
                """,
                [n],
            )
            cursor.execute("ANALYZE")
    return time.perf_counter() - start


def load_levels() -> float:
    """Stock per location summing to each product's stock, as the levels effect keeps it:
    NORTH holds a third of every second product's, SOUTH a quarter of every third's, OLD
    (then deactivated: still holding stock, so still exported) 1 unit of every 50th, the
    default location the rest."""
    from django.db import connection

    from app.models import Location
    from app.tracking.levels import default_location_id

    start = time.perf_counter()
    main = default_location_id()
    north, south, old = (
        Location.objects.create(code=code, name=code.title()).pk
        for code in ("NORTH", "SOUTH", "OLD")
    )
    insert = "INSERT INTO app_stocklevel (product_id, location_id, quantity) "
    with connection.cursor() as cursor:
        for location, quantity, where in (
            (north, "stock / 3", "id %% 2 = 0"),
            (south, "stock / 4", "id %% 3 = 0"),
            (old, "1", "id %% 50 = 0"),
        ):
            cursor.execute(
                f"{insert} SELECT id, %s, {quantity} FROM app_product WHERE {where}", [location]
            )
        cursor.execute(
            f"{insert} SELECT p.id, %s, p.stock - COALESCE((SELECT SUM(l.quantity) "
            "FROM app_stocklevel l WHERE l.product_id = p.id), 0) FROM app_product p",
            [main],
        )
        Location.objects.filter(pk=old).update(active=False)
        cursor.execute(
            "VACUUM ANALYZE app_stocklevel" if connection.vendor == "postgresql" else "ANALYZE"
        )
    return time.perf_counter() - start


# --- export memory (child processes) ----------------------------------------------------------

CHILD = r"""
import os, sys, time
sys.path.insert(0, os.getcwd())
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockpipe.settings")
import django
django.setup()
from django.test import Client
from app.services.tokens import create_token
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

def rss(field):
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith(field)) / 1024

user, _ = get_user_model().objects.get_or_create(username="bench-exporter")
user.user_permissions.add(Permission.objects.get(codename="view_product"))
_, token = create_token(user, "bench")
client = Client()
before = rss("VmRSS")
start = time.perf_counter()
response = client.get("/api/exports/products", {"format": sys.argv[1]},
                      headers={"Authorization": f"Bearer {token}"})
assert response.status_code == 200 and response.streaming, response
size = first = 0
for chunk in response.streaming_content:
    if not first:
        first = time.perf_counter() - start
    size += len(chunk)
response.close()
elapsed = time.perf_counter() - start
print("RESULT", before, rss("VmHWM"), elapsed, first, size)
"""


def export_memory(url: str, fmt: str) -> dict:
    env = {**os.environ, "DATABASE_URL": url, "LOG_LEVEL": "WARNING", "DEBUG": "False"}
    env["EMAIL_URL"] = "memorymail://"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, fmt], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise SystemExit(f"export child failed:\n{proc.stdout}\n{proc.stderr}")
    line = next(line for line in proc.stdout.splitlines() if line.startswith("RESULT"))
    before, peak, elapsed, first, size = (float(x) for x in line.split()[1:])
    return {
        "format": fmt,
        "rss_before_mb": round(before),
        "peak_rss_mb": round(peak),
        "seconds": round(elapsed, 1),
        "first_byte_s": round(first, 2),
        "mb": round(size / 1e6, 1),
    }


def copy_limit() -> float | None:
    """PostgreSQL's own CSV of the same columns (COPY TO STDOUT), read and discarded: the
    stock per location as one ``SUM(...) FILTER`` per location over the joined levels."""
    from django.db import connection

    from app.models import Location
    from app.selectors.exports import product_stock_columns

    if connection.vendor != "postgresql":
        return None
    ids = dict(Location.objects.values_list("code", "pk"))
    per_location = "".join(  # the export's location columns, "stock@<code>"
        f", COALESCE(SUM(l.quantity) FILTER (WHERE l.location_id = {ids[code]}), 0)"
        for code in (c.header.split("@", 1)[1] for c in product_stock_columns())
    )
    connection.ensure_connection()
    start = time.perf_counter()
    with connection.connection.cursor() as cursor:
        sql = (
            "COPY (SELECT p.sku, p.name, p.price, p.stock, p.low_stock_threshold, "
            f"p.price * p.stock, p.created_at, p.updated_at{per_location} FROM app_product p "
            "LEFT JOIN app_stocklevel l ON l.product_id = p.id GROUP BY p.id ORDER BY p.sku) "
            "TO STDOUT WITH CSV HEADER"
        )
        with cursor.copy(sql) as copy:
            for _ in copy:
                pass
    return time.perf_counter() - start


# --- catalogue pages (this process) -----------------------------------------------------------


def deep_cursor(params: dict, fraction: float) -> str:
    """The cursor of the row at ``fraction`` of the (filtered, sorted) list."""
    from app.selectors import catalogue

    query = catalogue.parse_query(params)
    _, descending, keys = catalogue._columns(query.sort)
    rows = catalogue.filtered_products(query)
    count = rows.count()
    order = [f"-{k}" if descending else k for k in keys]
    product = rows.order_by(*order)[int(count * fraction)]
    return catalogue._encode(query, product)


def scenarios(n: int) -> list[tuple[str, dict]]:
    deep_sku = {"sort": "sku"}
    deep_price = {"sort": "-price"}
    return [
        ("first page (sku)", {}),
        ("sort name", {"sort": "name"}),
        ("sort price desc", {"sort": "-price"}),
        ("sort stock", {"sort": "stock"}),
        ("sort updated desc", {"sort": "-updated"}),
        ("low stock, by price", {"low_stock": "1", "sort": "price"}),
        ("sku prefix, by name", {"sku_prefix": "SKU-05", "sort": "name"}),
        ("search 'abc'", {"q": "abc"}),
        ("deep page (sku, 90 %)", {**deep_sku, "after": deep_cursor(deep_sku, 0.9)}),
        ("deep page (price desc, 90 %)", {**deep_price, "after": deep_cursor(deep_price, 0.9)}),
        ("previous page (updated, 50 %)", {"sort": "updated", "before": None}),
    ]


def time_requests(client, path: str, params: dict, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        response = client.get(path, params)
        times.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, (path, params, response.status_code)
    return times


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def catalogue_pages(n: int, requests: int) -> dict:
    from django.contrib.auth import get_user_model
    from django.test import Client

    user, _ = get_user_model().objects.get_or_create(username="bench-clerk")
    client = Client()
    client.force_login(user)
    pages, totals, rows = [], [], []
    for label, params in scenarios(n):
        if params.get("before", "") is None:
            params = {**params, "before": deep_cursor({"sort": params["sort"]}, 0.5)}
        time_requests(client, "/products/", params, 2)  # warm up (plans, caches)
        page = time_requests(client, "/products/", params, requests)
        total = time_requests(client, "/products/totals.json", params, max(3, requests // 4))
        pages += page
        totals += total
        rows.append(
            {
                "scenario": label,
                "page_p50_ms": round(statistics.median(page), 1),
                "page_p99_ms": round(p99(page), 1),
                "totals_p50_ms": round(statistics.median(total), 1),
                "totals_p99_ms": round(p99(total), 1),
            }
        )
        print(
            f"  {label:32s} page p50 {rows[-1]['page_p50_ms']:6.1f} ms  p99 "
            f"{rows[-1]['page_p99_ms']:6.1f} ms   totals p50 {rows[-1]['totals_p50_ms']:6.1f} ms"
            f"  p99 {rows[-1]['totals_p99_ms']:6.1f} ms",
            flush=True,
        )
    return {
        "scenarios": rows,
        "pages": len(pages),
        "page_p50_ms": round(statistics.median(pages), 1),
        "page_p99_ms": round(p99(pages), 1),
        "totals_p99_ms": round(p99(totals), 1),
    }


# --- driver ---------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=["postgres", "sqlite"], default="postgres")
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=40, help="requests per page scenario")
    parser.add_argument("--quick", action="store_true", help="CI smoke run: n=20,000, 5 requests")
    parser.add_argument("--check", action="store_true", help="exit 1 when a limit is missed")
    args = parser.parse_args()
    if args.quick:
        args.n, args.requests = 20_000, 5
    with tempfile.TemporaryDirectory(prefix="stockpipe-bench-") as tmp:
        url = fresh_database_url(args.db, Path(tmp), PG_NAME)
        setup_django(url)
        from django.db import connection

        print(f"== {args.db} ({connection.vendor}), {args.n:,} products", flush=True)
        print(f"  loaded in {load_products(args.n):.1f}s", flush=True)
        print(f"  stock at four locations in {load_levels():.1f}s", flush=True)
        copy_s = copy_limit()
        memory = []
        for fmt in ("csv", "xlsx"):
            result = export_memory(url, fmt)
            memory.append(result)
            print(
                f"  export {fmt}: {result['mb']} MB in {result['seconds']}s (first byte "
                f"{result['first_byte_s']}s), peak RSS {result['peak_rss_mb']} MB "
                f"(before the export {result['rss_before_mb']} MB; limit {LIMIT_MEMORY_MB} MB)"
                + (
                    f", {copy_s / result['seconds']:.2f}x the speed of COPY ({copy_s:.1f}s)"
                    if copy_s and fmt == "csv"
                    else ""
                ),
                flush=True,
            )
        pages = catalogue_pages(args.n, args.requests)
        connection.close()
    peak = max(m["peak_rss_mb"] for m in memory)
    ok_memory = peak < LIMIT_MEMORY_MB
    ok_pages = pages["page_p99_ms"] < LIMIT_PAGE_P99_MS
    print(
        f"  => export peak RSS {peak} MB = {peak / LIMIT_MEMORY_MB:.2f}x the {LIMIT_MEMORY_MB} MB "
        f"limit ({'met' if ok_memory else 'MISSED'}); page p99 {pages['page_p99_ms']} ms over "
        f"{pages['pages']} pages = {pages['page_p99_ms'] / LIMIT_PAGE_P99_MS:.2f}x the "
        f"{LIMIT_PAGE_P99_MS} ms limit ({'met' if ok_pages else 'MISSED'}); totals p99 "
        f"{pages['totals_p99_ms']} ms (fetched after the page)",
        flush=True,
    )
    result = {
        "db": args.db,
        "n": args.n,
        "exports": memory,
        "copy_limit_s": round(copy_s, 2) if copy_s else None,
        "catalogue": pages,
    }
    print("RESULT " + json.dumps(result))
    return 0 if (ok_memory and ok_pages) or not args.check else 1


if __name__ == "__main__":
    sys.exit(main())
