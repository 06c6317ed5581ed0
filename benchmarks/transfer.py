"""Transfer benchmark: a pipeline moving stock of ``n`` products between two locations,
against the set-based SQL limit measured in the same run on the same database.

    python benchmarks/transfer.py [--db sqlite|postgres|both] [--n 100000] [--repeat 3]

* limit:    raw SQL on the DB-API connection, one transaction, no Django: the source levels
            decremented with one ``UPDATE ... FROM (VALUES ...)`` guarded by
            ``quantity >= n``, the target levels inserted with one ``INSERT ... SELECT``, two
            ``INSERT ... SELECT`` into the ledger (one row per product and side).
* pipeline: ``process_pipeline`` with one ``transfer_stock`` step: validation, run record,
            row locks, availability checks (reservations), levels, ledger, events, one
            transaction.

Target: pipeline >= 0.5x the speed of the limit. ``--check`` exits non-zero when missed.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

from common import bench_parser, fresh_database_url, run_per_database, setup_django

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench_transfer")
TARGET_LIMIT = 0.5


def sku(i: int) -> str:
    return f"SKU-{i:07d}"


def quantity(i: int) -> int:
    return 1 + i % 5


def load(n: int) -> None:
    """``n`` products with 10 + i % 50 units at MAIN, and a location NORTH (not timed)."""
    from django.db import connection
    from django.utils import timezone

    from app.models import Location, Product

    Location.objects.get_or_create(code="NORTH", defaults={"name": "North"})
    now = timezone.now()
    table = Product._meta.db_table
    with connection.cursor() as cursor:
        rows = []
        for i in range(n):
            rows.append((sku(i), f"Product {i}", 10, 10 + i % 50, 5, now, now))
            if len(rows) == 5000 or i == n - 1:
                cursor.executemany(
                    f"INSERT INTO {table} (sku, name, price, stock, low_stock_threshold, "
                    "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
                rows = []


def reset() -> None:
    """All stock back at MAIN, nothing at NORTH, an empty ledger (not timed)."""
    from django.db import connection

    from app.models import PipelineRun, PipelineRunSpec, StockMovement

    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM app_stocklevel")
        cursor.execute(
            "INSERT INTO app_stocklevel (product_id, location_id, quantity) SELECT id, "
            "(SELECT id FROM app_location WHERE code = 'MAIN'), stock FROM app_product"
        )
        for model in (StockMovement, PipelineRunSpec, PipelineRun):
            cursor.execute(f"DELETE FROM {model._meta.db_table}")
        cursor.execute("DELETE FROM django_tasks_database_dbtaskresult")
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")


def run_limit(n: int) -> float:
    from django.db import connection

    connection.ensure_connection()
    raw = connection.connection
    pg = connection.vendor == "postgresql"
    now = "now()" if pg else "strftime('%Y-%m-%d %H:%M:%f', 'now')"
    integer = "::integer" if pg else ""
    cte = "" if pg else "MATERIALIZED "
    values = ",".join(f"('{sku(i)}',{quantity(i)}{integer})" for i in range(n))
    main = "(SELECT id FROM app_location WHERE code = 'MAIN')"
    north = "(SELECT id FROM app_location WHERE code = 'NORTH')"
    with_v = (
        f"WITH v(sku, n) AS {cte}(VALUES {values}), "
        f"m AS {cte}(SELECT p.id AS pid, p.sku, p.stock, v.n FROM v CROSS JOIN app_product p "
        f"WHERE p.sku = v.sku) "
    )
    ledger = (
        "INSERT INTO app_stockmovement (product_id, location_id, sku, delta, stock_after, "
        "reason, created_at, source) "
    )
    statements = [
        with_v + "UPDATE app_stocklevel SET quantity = app_stocklevel.quantity - m.n FROM m "
        f"WHERE app_stocklevel.product_id = m.pid AND app_stocklevel.location_id = {main} "
        "AND app_stocklevel.quantity >= m.n",
        with_v + "INSERT INTO app_stocklevel (product_id, location_id, quantity) "
        f"SELECT m.pid, {north}, m.n FROM m",
        with_v + ledger + f"SELECT m.pid, {main}, m.sku, -m.n, m.stock, 'transfer', {now}, 'raw' "
        "FROM m",
        with_v + ledger + f"SELECT m.pid, {north}, m.sku, m.n, m.stock, 'transfer', {now}, 'raw' "
        "FROM m",
    ]
    start = time.perf_counter()
    cursor = raw.cursor()
    if not pg:
        cursor.execute("BEGIN IMMEDIATE")
    for sql in statements:
        cursor.execute(sql)
    raw.commit()
    cursor.close()
    return time.perf_counter() - start


def run_pipeline(n: int) -> float:
    from app.utils.utils import process_pipeline

    spec = {
        "name": "transfer benchmark",
        "steps": [
            {
                "op": "transfer_stock",
                "from_location": "MAIN",
                "to_location": "NORTH",
                "quantities": {sku(i): quantity(i) for i in range(n)},
            }
        ],
    }
    start = time.perf_counter()
    result = process_pipeline(spec)
    elapsed = time.perf_counter() - start
    assert result["status"] == "succeeded", result.get("error")
    return elapsed


def check(n: int, label: str) -> None:
    from django.db.models import Sum

    from app.models import Product, StockLevel, StockMovement

    assert StockMovement.objects.count() == 2 * n, label
    moved = StockLevel.objects.filter(location__code="NORTH").aggregate(s=Sum("quantity"))["s"]
    assert moved == sum(quantity(i) for i in range(n)), label
    held = StockLevel.objects.aggregate(s=Sum("quantity"))["s"]
    assert held == Product.objects.aggregate(s=Sum("stock"))["s"], label


def bench_one(db: str, n: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="stockpipe-bench-") as tmp:
        url = fresh_database_url(db, Path(tmp), PG_NAME)
        setup_django(url)
        from django.db import connection

        print(f"== {db} ({connection.vendor}), n={n:,}", flush=True)
        load(n)
        import app.utils.utils  # noqa: F401  (imports are not part of any route's time)

        limits, pipelines = [], []
        for attempt in range(repeat):
            reset()
            limits.append(run_limit(n))
            check(n, "limit")
            reset()
            pipelines.append(run_pipeline(n))
            check(n, "pipeline")
            print(
                f"  run {attempt + 1}/{repeat}: limit {limits[-1]:.2f}s, "
                f"pipeline {pipelines[-1]:.2f}s",
                flush=True,
            )
        connection.close()
    limit, pipeline = min(limits), min(pipelines)
    result = {
        "db": db,
        "n": n,
        "limit_s": round(limit, 3),
        "pipeline_s": round(pipeline, 3),
        "repeat": repeat,
        "speed_vs_limit": round(limit / pipeline, 2),
    }
    print(
        f"  => pipeline {pipeline:.2f}s, limit {limit:.2f}s (best of {repeat}): "
        f"{result['speed_vs_limit']}x the speed of the limit (target >= {TARGET_LIMIT}x)",
        flush=True,
    )
    print("RESULT " + json.dumps(result), flush=True)
    return result


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--n", type=int, default=100_000)
    args = parser.parse_args()
    if args.db == "both":
        sys.exit(run_per_database(__file__))
    result = bench_one(args.db, args.n, args.repeat)
    if args.check and result["speed_vs_limit"] < TARGET_LIMIT:
        sys.exit(1)


if __name__ == "__main__":
    main()
