"""Pipeline benchmark: one command, ratios measured in the same run on the same database.

    python benchmarks/pipeline.py [--db sqlite|postgres|both] [--n 100000] [--repeat 3] [--quick]

For each database it creates a fresh one (a temp SQLite file / PostgreSQL ``stockpipe_bench``),
loads ``n`` products, and times the same workload (set every price, adjust every stock)
three ways, restoring the products and emptying the history tables before each:

* naive:    the seed's route, one ``save()`` per change with the seed's receivers (post_save
            re-reads the product and writes PriceHistory; pre_save e-mails when stock < 5),
            autocommit. Timed on a sample of products, extrapolated linearly to ``n``.
* limit:    the practical limit, no Django in the loop: one ``INSERT ... SELECT`` per history
            table (price history, stock ledger) and one ``UPDATE ... FROM (VALUES ...)`` that
            sets price and stock of every row, or an INSERT and an UPDATE per operation,
            whichever is faster (both are timed and printed).
* pipeline: ``process_pipeline`` (validation, run record, locking, the save receivers'
            effects: price history, stock ledger, low-stock alerts...), one transaction.

Limit and pipeline run ``--repeat`` times (alternating); the best time of each counts.

Then it measures peak memory (VmHWM) of ``manage.py run_pipeline`` upserting a
``--memory-rows`` CSV (default 1,000,000) in a child process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from common import fresh_database_url, run_per_database, setup_django

ROOT = Path(__file__).resolve().parent.parent
PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench")

TARGET_NAIVE = 30.0
TARGET_LIMIT = 0.5
TARGET_MEMORY_MB = 400


# --- database setup (before Django is configured) -------------------------------------


def database_url(db: str, workdir: Path) -> str:
    return fresh_database_url(db, workdir, PG_NAME)


# --- workload -------------------------------------------------------------------------


def sku(i: int) -> str:
    return f"SKU-{i:07d}"


def initial(i: int) -> tuple[Decimal, int]:
    return Decimal(10 + i % 990) + Decimal(i % 100) / 100, 3 + (i * 37) % 60


def workload(n: int) -> tuple[dict[str, str], dict[str, int]]:
    """New prices (all different from the current ones) and deltas (-3..+3, never negative);
    some products cross the low-stock threshold both ways, so alerts open and resolve."""
    prices = {sku(i): str(initial(i)[0] + Decimal("1.25")) for i in range(n)}
    deltas = {sku(i): (i % 7) - 3 for i in range(n)}
    return prices, deltas


def load_products(n: int) -> None:
    """Insert the products and a pristine copy of their tracked columns (not timed)."""
    from django.db import connection
    from django.utils import timezone

    from app.models import Product

    now = timezone.now()
    table = Product._meta.db_table
    with connection.cursor() as cursor:
        rows = []
        for i in range(n):
            price, stock = initial(i)
            rows.append((sku(i), f"Product {i}", price, stock, 5, now, now))
            if len(rows) == 5000 or i == n - 1:
                cursor.executemany(
                    f"INSERT INTO {table} (sku, name, price, stock, low_stock_threshold, created_at, updated_at) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
                rows = []
        # Stock held at the default location, as migration 0006 leaves existing stock.
        cursor.execute(
            f"INSERT INTO app_stocklevel (product_id, location_id, quantity) "
            f"SELECT id, (SELECT id FROM app_location WHERE code = 'MAIN'), stock FROM {table}"
        )
        cursor.execute("DROP TABLE IF EXISTS bench_pristine")
        cursor.execute(f"CREATE TABLE bench_pristine AS SELECT id, price, stock FROM {table}")


def reset() -> None:
    """Restore prices and stock, empty history, ledger, alerts and queued tasks (not timed)."""
    from django.db import connection

    from app.models import PipelineRun, PriceHistory, Product, StockAlert, StockMovement

    table = Product._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET price = b.price, stock = b.stock FROM bench_pristine b "
            f"WHERE {table}.id = b.id"
        )
        cursor.execute(
            "UPDATE app_stocklevel SET quantity = b.stock FROM bench_pristine b "
            "WHERE app_stocklevel.product_id = b.id"
        )
        for model in (PriceHistory, StockMovement, StockAlert, PipelineRun):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
        cursor.execute("DELETE FROM django_tasks_database_dbtaskresult")
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("VACUUM ANALYZE")
    else:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# --- the three routes -------------------------------------------------------------------


def seed_pre_save(sender, instance, **kwargs):
    from django.core.mail import send_mail

    if instance.stock < 5:
        send_mail(
            f"Low Stock Alert: {instance.name}",
            f"Only {instance.stock} units remaining",
            "stockpipe@localhost",
            ["manager@company.com"],
        )


def seed_post_save(sender, instance, created, **kwargs):
    from app.models import PriceHistory, Product

    product = Product.objects.get(id=instance.id)
    PriceHistory.objects.create(
        product=product,
        sku=product.sku,
        name=product.name,
        old_price=instance._loaded["price"],
        new_price=product.price,
        changed_at=product.updated_at,
    )


def run_naive(prices: dict[str, str], deltas: dict[str, int]) -> float:
    """The seed: per-object get + save() in autocommit, with the seed's two receivers."""
    from contextlib import ExitStack

    from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

    from app import receivers
    from app.models import Product
    from app.signals import muted

    with ExitStack() as stack:
        for signal, receiver, uid in [
            (pre_save, receivers.product_pre_save, "app.product_pre_save"),
            (post_save, receivers.product_post_save, "app.product_post_save"),
            (pre_delete, receivers.product_pre_delete, "app.product_pre_delete"),
            (post_delete, receivers.product_post_delete, "app.product_post_delete"),
        ]:
            stack.enter_context(muted(signal, receiver, sender=Product, dispatch_uid=uid))
        pre_save.connect(seed_pre_save, sender=Product, dispatch_uid="bench.seed_pre_save")
        post_save.connect(seed_post_save, sender=Product, dispatch_uid="bench.seed_post_save")
        stack.callback(pre_save.disconnect, sender=Product, dispatch_uid="bench.seed_pre_save")
        stack.callback(post_save.disconnect, sender=Product, dispatch_uid="bench.seed_post_save")
        start = time.perf_counter()
        for key, price in prices.items():
            product = Product.objects.get(sku=key)
            product.price = Decimal(price)
            product.save()
        for key, delta in deltas.items():
            product = Product.objects.get(sku=key)
            product.stock += delta
            product.save()
        return time.perf_counter() - start


def run_limit(prices: dict[str, str], deltas: dict[str, int], *, per_step: bool = False) -> float:
    """A practical limit: raw SQL on the DB-API connection, one transaction, no Django.

    One ``UPDATE ... FROM (VALUES ...)`` sets price and stock of every row, after one
    ``INSERT ... SELECT`` per history table (price history, stock ledger) reading the old
    values from the same VALUES list. All rows go in one statement each (no chunking); the
    values are SQL literals (no parameter binding). ``per_step``: an INSERT and an UPDATE
    per operation instead (two UPDATE passes); the benchmark takes the faster of the two.
    """
    from django.db import connection

    from app.models import PriceHistory, Product, StockMovement

    connection.ensure_connection()
    raw = connection.connection  # the DB-API connection: no Django in the loop
    product, history, ledger = (
        Product._meta.db_table,
        PriceHistory._meta.db_table,
        StockMovement._meta.db_table,
    )
    pg = connection.vendor == "postgresql"
    now = "now()" if pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    num, integer = ("::numeric(12,2)", "::integer") if pg else ("", "")
    # SQLite runs a non-materialised VALUES CTE as a co-routine, quadratic here.
    cte = "" if pg else "MATERIALIZED "
    start = time.perf_counter()
    history_sql = (
        f"INSERT INTO {history} (product_id, sku, name, old_price, new_price, changed_at, source) "
        f"SELECT p.id, p.sku, p.name, p.price, v.price, {now}, 'raw' "
        f"FROM v CROSS JOIN {product} p WHERE p.sku = v.sku AND p.price <> v.price"
    )
    main = "(SELECT id FROM app_location WHERE code = 'MAIN')"
    ledger_sql = (
        f"INSERT INTO {ledger} (product_id, location_id, sku, delta, stock_after, reason, "
        f"created_at, source) "
        f"SELECT p.id, {main}, p.sku, v.delta, p.stock + v.delta, '', {now}, 'raw' "
        f"FROM v CROSS JOIN {product} p WHERE p.sku = v.sku AND v.delta <> 0"
    )
    # The stock at the default location follows the total (issue 14; in this benchmark all
    # stock is there): after the product UPDATE, each level reads its product by key.
    levels_sql = (
        f"UPDATE app_stocklevel SET quantity = (SELECT p.stock FROM {product} p "
        f"WHERE p.id = app_stocklevel.product_id) WHERE location_id = {main}"
    )
    if per_step:
        price_values = ",".join(f"('{k}',{v}{num})" for k, v in prices.items())
        delta_values = ",".join(f"('{k}',{d}{integer})" for k, d in deltas.items())
        with_prices = f"WITH v(sku, price) AS {cte}(VALUES {price_values}) "
        with_deltas = f"WITH v(sku, delta) AS {cte}(VALUES {delta_values}) "
        statements = [
            with_prices + history_sql,
            with_prices + f"UPDATE {product} SET price = v.price, updated_at = {now} "
            f"FROM v WHERE {product}.sku = v.sku",
            with_deltas + ledger_sql,
            with_deltas + f"UPDATE {product} SET stock = {product}.stock + v.delta, "
            f"updated_at = {now} FROM v WHERE {product}.sku = v.sku",
            levels_sql,
        ]
    else:
        assert prices.keys() == deltas.keys(), "the limit sets and adjusts the same products"
        values = ",".join(f"('{k}',{v}{num},{deltas[k]}{integer})" for k, v in prices.items())
        with_values = f"WITH v(sku, price, delta) AS {cte}(VALUES {values}) "
        statements = [
            with_values + history_sql,
            with_values + ledger_sql,
            with_values + f"UPDATE {product} SET price = v.price, "
            f"stock = {product}.stock + v.delta, updated_at = {now} "
            f"FROM v WHERE {product}.sku = v.sku",
            levels_sql,
        ]
    cursor = raw.cursor()
    if not pg:
        cursor.execute("BEGIN IMMEDIATE")
    for sql in statements:
        t = time.perf_counter()
        cursor.execute(sql)
        if os.environ.get("BENCH_VERBOSE"):
            print(f"    {time.perf_counter() - t:.3f}s {sql[:40]}...{sql[-60:]}")
    t = time.perf_counter()
    raw.commit()
    if os.environ.get("BENCH_VERBOSE"):
        print(f"    {time.perf_counter() - t:.3f}s commit")
    cursor.close()
    return time.perf_counter() - start


def run_pipeline(prices: dict[str, str], deltas: dict[str, int]) -> float:
    from app.utils.utils import process_pipeline

    spec = {
        "name": "benchmark",
        "steps": [{"op": "set_prices", "prices": prices}, {"op": "adjust_stock", "deltas": deltas}],
    }
    start = time.perf_counter()
    result = process_pipeline(spec)
    elapsed = time.perf_counter() - start
    assert result["status"] == "succeeded", result.get("error")
    return elapsed


def check_effects(n: int, label: str) -> None:
    from app.models import PriceHistory, StockMovement

    history = PriceHistory.objects.count()
    assert history == n, f"{label}: {history} price history rows for {n} products"
    moved = StockMovement.objects.count()
    expected = sum(1 for i in range(n) if (i % 7) != 3)
    assert moved == expected, f"{label}: {moved} stock movements, expected {expected}"
    from django.db.models import Sum

    from app.models import Product, StockLevel

    held = StockLevel.objects.aggregate(s=Sum("quantity"))["s"]
    total = Product.objects.aggregate(s=Sum("stock"))["s"]
    assert held == total, f"{label}: locations hold {held}, products {total}"


# --- memory -------------------------------------------------------------------------------


def measure_memory(url: str, rows: int, workdir: Path) -> float:
    """Peak RSS (MB) of ``manage.py run_pipeline`` upserting ``rows`` CSV rows (fresh products)."""
    feed = workdir / "feed.csv"
    with feed.open("w") as fh:
        fh.write("sku,name,price,stock\n")
        for i in range(rows):
            fh.write(f"MEM-{i:08d},Memory product {i},{10 + i % 500}.{i % 100:02d},{i % 50}\n")
    spec = workdir / "memory.json"
    spec.write_text(
        json.dumps({"name": "memory", "steps": [{"op": "upsert_products", "csv_file": "feed.csv"}]})
    )
    # Peak RSS of the child's own image: VmHWM (Linux). ru_maxrss is not used: Linux carries
    # the RSS of the forked copy of this (large) benchmark process over the exec, so it
    # reported this process's size, not the pipeline's (437-483 MB instead of ~80 MB).
    code = (
        "import resource, sys, runpy; sys.argv = ['manage.py', 'run_pipeline', sys.argv[1], '--no-progress'];"
        "\ntry:\n    runpy.run_path('manage.py', run_name='__main__')\nfinally:\n"
        "    try:\n        kb = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "    except OSError:\n        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    print('MAXRSS_KB', kb, file=sys.stderr)"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "stockpipe.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "False",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(spec)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"memory run failed:\n{proc.stdout}\n{proc.stderr}")
    kb = int(
        next(line for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")).split()[1]
    )
    print(f"  memory: {rows:,} CSV rows upserted in {elapsed:.1f}s, peak RSS {kb / 1024:.0f} MB")
    return kb / 1024


# --- driver ---------------------------------------------------------------------------------


def bench_one(db: str, n: int, sample: int, memory_rows: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="stockpipe-bench-") as tmp:
        workdir = Path(tmp)
        url = database_url(db, workdir)
        setup_django(url)
        from django.db import connection

        print(f"== {db} ({connection.vendor}), n={n:,}, naive sample={sample:,}", flush=True)
        load_products(n)
        prices, deltas = workload(n)
        sample_prices = dict(list(prices.items())[:sample])
        sample_deltas = dict(list(deltas.items())[:sample])

        import app.utils.utils  # noqa: F401  (imports are not part of any route's time)

        reset()
        naive_sample = run_naive(sample_prices, sample_deltas)
        naive = naive_sample * n / sample
        print(
            f"  naive:    {naive_sample:.2f}s for {sample:,} -> {naive:.1f}s for {n:,} (extrapolated)",
            flush=True,
        )
        # Limit and pipeline alternate; each route's best of ``repeat`` runs counts, so a
        # burst of load from other processes does not decide the ratio.
        limits, per_step, pipelines = [], [], []
        for attempt in range(repeat):
            reset()
            limits.append(run_limit(prices, deltas))
            check_effects(n, "limit")
            reset()
            per_step.append(run_limit(prices, deltas, per_step=True))
            check_effects(n, "limit per step")
            reset()
            pipelines.append(run_pipeline(prices, deltas))
            check_effects(n, "pipeline")
            print(
                f"  run {attempt + 1}/{repeat}: limit {limits[-1]:.2f}s, "
                f"limit per step {per_step[-1]:.2f}s, pipeline {pipelines[-1]:.2f}s",
                flush=True,
            )
        # The limit is the faster raw route: on PostgreSQL one UPDATE over a three-column
        # VALUES list is not always faster than two over two-column lists.
        limit_merged, limit_per_step, pipeline = min(limits), min(per_step), min(pipelines)
        limit = min(limit_merged, limit_per_step)
        print(
            f"  limit:    {limit:.2f}s (best of {repeat}; one UPDATE {limit_merged:.2f}s, "
            f"per step {limit_per_step:.2f}s)",
            flush=True,
        )
        print(f"  pipeline: {pipeline:.2f}s (best of {repeat})", flush=True)
        memory = measure_memory(url, memory_rows, workdir) if memory_rows else None
        connection.close()
    result = {
        "db": db,
        "n": n,
        "naive_s": round(naive, 2),
        "naive_sample": sample,
        "limit_s": round(limit, 3),
        "limit_one_update_s": round(limit_merged, 3),
        "limit_per_step_s": round(limit_per_step, 3),
        "pipeline_s": round(pipeline, 3),
        "repeat": repeat,
        "speedup_vs_naive": round(naive / pipeline, 1),
        "speed_vs_limit": round(limit / pipeline, 2),
        "memory_rows": memory_rows,
        "peak_memory_mb": round(memory) if memory else None,
    }
    print(
        f"  => pipeline is {result['speedup_vs_naive']}x faster than naive (target >= {TARGET_NAIVE}x), "
        f"{result['speed_vs_limit']}x the speed of the limit (target >= {TARGET_LIMIT}x)"
        + (
            f", peak {result['peak_memory_mb']} MB for {memory_rows:,} rows (target < {TARGET_MEMORY_MB})"
            if memory
            else ""
        ),
        flush=True,
    )
    print("RESULT " + json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=100_000, help="products (default 100,000)")
    parser.add_argument(
        "--sample", type=int, default=2_000, help="products timed on the naive route"
    )
    parser.add_argument(
        "--memory-rows", type=int, default=1_000_000, help="CSV rows for the memory run (0: skip)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke test: n=2000, sample=300, 20,000 memory rows, one run",
    )
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of limit and pipeline; best counts"
    )
    parser.add_argument("--check", action="store_true", help="exit non-zero if a target is missed")
    args = parser.parse_args()
    if args.quick:
        args.n, args.sample, args.memory_rows, args.repeat = 2_000, 300, 20_000, 1
    args.sample = min(args.sample, args.n)
    if args.db == "both":
        raise SystemExit(run_per_database(__file__))
    result = bench_one(args.db, args.n, args.sample, args.memory_rows, args.repeat)
    if args.check:
        missed = [
            name
            for name, ok in [
                ("naive", result["speedup_vs_naive"] >= TARGET_NAIVE),
                ("limit", result["speed_vs_limit"] >= TARGET_LIMIT),
                (
                    "memory",
                    result["peak_memory_mb"] is None or result["peak_memory_mb"] < TARGET_MEMORY_MB,
                ),
            ]
            if not ok
        ]
        if missed:
            raise SystemExit(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
