"""Profile the supplier upsert workload of ``benchmarks/pipeline.py`` once (cProfile), with
the statements it issues, next to the limit's fastest form.

    python benchmarks/profile_upsert.py --db sqlite|postgres --n 100000 [--top 30]
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
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
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stockpipe-prof-") as tmp:
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
        limits = Limits(
            connection, conf.default_location(), conf.low_stock_threshold(), verbose=True
        )
        forms = limits.forms("upsert")
        for name, form in forms.items():
            bench.reset()
            print(f"limit {name}: {form(work.data):.2f}s", flush=True)
        bench.reset()
        spec = {"name": "profile", "steps": work.steps}
        profiler = cProfile.Profile()
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            profiler.enable()
            result = process_pipeline(spec)
            profiler.disable()
            elapsed = time.perf_counter() - start
        assert result["status"] == "succeeded", result.get("error")
        print(f"pipeline: {elapsed:.2f}s (profiled), {len(queries.captured_queries)} statements")
        by_kind: dict[str, list[float]] = {}
        for q in queries.captured_queries:
            key = " ".join(q["sql"].split()[:3])[:60]
            by_kind.setdefault(key, []).append(float(q["time"]))
        for key, times in sorted(by_kind.items(), key=lambda kv: -sum(kv[1]))[:15]:
            print(f"  {len(times):6d} x {sum(times):7.2f}s  {key}")
        stats = pstats.Stats(profiler)
        stats.sort_stats("cumulative").print_stats(args.top)
        stats.sort_stats("tottime").print_stats(args.top)
        connection.close()


if __name__ == "__main__":
    main()
