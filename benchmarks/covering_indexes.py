"""What the included columns of the two history indexes (migrations 0014, 0016) cost a write.

    flock /tmp/stockpipe-bench.lock .venv/bin/python benchmarks/covering_indexes.py [--rows 100000] [--repeat 3]

``benchmarks/indexes.py``'s method for one index at a time, with four variants of it: the
index as the models make it (0016: ``INCLUDE`` the columns the product page and the API's
history pages read), as migration 0014 made it (the product page's columns), the key
columns alone (before 0014), and no such index. Each ``INSERT ... SELECT`` of ``--rows``
rows shaped like the project's (``indexes.INSERTS``) runs in a rolled-back transaction that
first swaps the variant in (transactional DDL on an empty table: instantaneous); the variants
alternate, the best of ``--repeat`` counts. Write cost of a variant = its time minus the time
without the index.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_parser, fresh_database_url, setup_django
from indexes import INSERTS, seed_products

INDEXES = {
    "app_pricehistory": ("pricehistory_product_time", "product_id, changed_at, id"),
    "app_stockmovement": ("stockmovement_product_time", "product_id, created_at, id"),
}
# What 0014 included (0016 added sku, and idempotency_key to the ledger's).
INCLUDED_0014 = {
    "app_pricehistory": "old_price, new_price, source, changed_by_id",
    "app_stockmovement": "location_id, delta, stock_after, reason, source, changed_by_id",
}


def timed(connection, table: str, params: dict, swap: list[str]) -> float:
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            for sql in swap:
                cursor.execute(sql)
            start = time.perf_counter()
            cursor.execute(INSERTS[table], params)
            return time.perf_counter() - start
        finally:
            cursor.execute("ROLLBACK")


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--products", type=int, default=10_000)
    args = parser.parse_args()
    name = os.environ.get("BENCH_COVERING_DB", "stockpipe_bench_covering")
    url = fresh_database_url("postgres", Path(tempfile.mkdtemp()), name)
    setup_django(url)
    from django.db import connection

    first, location = seed_products(args.products)
    connection.ensure_connection()
    connection.connection.autocommit = True
    params = {"rows": args.rows, "products": args.products, "first": first}
    params["location"] = location.pk
    print(f"{args.rows:,} rows per INSERT, best of {args.repeat}, PostgreSQL, rolled back\n")
    print(
        "| table | index | insert, INCLUDE (0016) | INCLUDE (0014) | key only (before 0014) "
        "| no such index | cost, 0016 | cost, 0014 | cost, key only |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for table, (name, key) in INDEXES.items():
        drop = f'DROP INDEX "{name}"'
        variants = {
            "include": [],
            "0014": [
                drop,
                f'CREATE INDEX "{name}" ON "{table}" ({key}) INCLUDE ({INCLUDED_0014[table]})',
            ],
            "key": [drop, f'CREATE INDEX "{name}" ON "{table}" ({key})'],
            "none": [drop],
        }
        best = {v: float("inf") for v in variants}
        for _ in range(args.repeat):
            for variant, swap in variants.items():
                best[variant] = min(best[variant], timed(connection, table, params, swap))
        none = best["none"]
        cost = {v: f"{(best[v] - none) / none:+.1%}" for v in ("include", "0014", "key")}
        print(
            f"| {table} | {name} | {best['include']:.3f} s | {best['0014']:.3f} s "
            f"| {best['key']:.3f} s | {none:.3f} s | {cost['include']} | {cost['0014']} "
            f"| {cost['key']} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
