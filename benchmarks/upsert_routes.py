"""The upsert workload of ``benchmarks/pipeline.py`` through both routes of
``upsert_products``, alternating, in one process: the SQL route (only the project's
receivers listen) and the object route (a no-op user ``pre_save`` receiver connected, as
any user receiver would force). Same catalogue, restored before each run; best of
``--repeat``.

    python benchmarks/upsert_routes.py --db sqlite|postgres --n 100000 [--repeat 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import fresh_database_url, setup_django

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench")


def user_pre_save(sender, instance, **kwargs) -> None:
    pass


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stockpipe-routes-") as tmp:
        setup_django(fresh_database_url(args.db, Path(tmp), PG_NAME))
        import pipeline as bench
        from django.db import connection
        from django.db.models.signals import pre_save

        from app.models import Product
        from app.utils.utils import process_pipeline

        bench.load_products(args.n)
        work = bench.Workload("upsert", args.n)
        best: dict[str, float] = {}
        contents = {}
        for run in range(args.repeat):
            for route in ("sql", "objects"):
                bench.reset()
                if route == "objects":
                    pre_save.connect(user_pre_save, sender=Product, dispatch_uid="bench.routes")
                try:
                    start = time.perf_counter()
                    result = process_pipeline({"name": route, "steps": work.steps})
                    elapsed = time.perf_counter() - start
                finally:
                    pre_save.disconnect(sender=Product, dispatch_uid="bench.routes")
                assert result["status"] == "succeeded", result.get("error")
                contents[route] = bench.contents()
                best[route] = min(best.get(route, elapsed), elapsed)
                print(f"run {run + 1}: {route} {elapsed:.2f}s", flush=True)
        bench.check_same(contents["objects"], contents["sql"], "sql route")
        print(
            f"{connection.vendor}, n={args.n:,}: SQL route {best['sql']:.2f}s, object route "
            f"{best['objects']:.2f}s ({best['objects'] / best['sql']:.2f}x faster)"
        )
        connection.close()


if __name__ == "__main__":
    main()
