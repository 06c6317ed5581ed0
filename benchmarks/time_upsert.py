"""Time the supplier upsert workload of ``benchmarks/pipeline.py`` in-process, without a
profiler: the limit's fastest forms and the pipeline, alternating, with the pipeline's
statements summed by kind (what is left outside the database is the Python side).

    python benchmarks/time_upsert.py --db sqlite|postgres --n 100000 [--repeat 2]
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


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stockpipe-time-") as tmp:
        url = fresh_database_url(args.db, Path(tmp), PG_NAME)
        setup_django(url)
        import pipeline as bench
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from pipeline_limits import Limits

        from app import conf
        from app.utils.utils import process_pipeline

        bench.load_products(args.n)
        work = bench.Workload("upsert", args.n)
        limits = Limits(connection, conf.default_location(), conf.low_stock_threshold())
        forms = {k: v for k, v in limits.forms("upsert").items() if k != "values"}
        spec = {"name": "time", "steps": work.steps}
        for _attempt in range(args.repeat):
            for name, form in forms.items():
                bench.reset()
                print(f"limit {name}: {form(work.data):.2f}s", flush=True)
            bench.reset()
            start = time.perf_counter()
            result = process_pipeline(spec)
            elapsed = time.perf_counter() - start
            assert result["status"] == "succeeded", result.get("error")
            print(f"pipeline: {elapsed:.2f}s", flush=True)
        bench.reset()
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            process_pipeline(spec)
            elapsed = time.perf_counter() - start
        by_kind: dict[str, list[float]] = {}
        for q in queries.captured_queries:
            key = " ".join(q["sql"].split()[:3])[:50]
            by_kind.setdefault(key, []).append(float(q["time"]))
        total = sum(sum(t) for t in by_kind.values())
        print(f"pipeline (statements captured): {elapsed:.2f}s, in statements {total:.2f}s")
        for key, times in sorted(by_kind.items(), key=lambda kv: -sum(kv[1]))[:16]:
            print(f"  {len(times):6d} x {sum(times):6.2f}s  {key}")
        connection.close()


if __name__ == "__main__":
    main()
