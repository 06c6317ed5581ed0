"""Time and profile one workload of ``benchmarks/pipeline.py`` in-process (the supplier
upsert by default): ``--repeat`` rounds of the limit's forms and the pipeline, alternating,
without a profiler; then the pipeline once more with cProfile, its statements summed by kind
(what is left outside the database is the Python side). ``--top 0``: no profile.

    python benchmarks/profile_upsert.py --db sqlite|postgres --n 100000
        [--workload upsert|map|adjust_prices|delete_products] [--repeat 1] [--top 30]
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
    parser.add_argument("--workload", default="upsert")
    parser.add_argument("--repeat", type=int, default=1)
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
        work = bench.Workload(args.workload, args.n)
        limits = Limits(
            connection, conf.default_location(), conf.low_stock_threshold(), verbose=True
        )
        spec = {"name": "profile", "steps": work.steps}
        for _round in range(args.repeat):
            for name, form in limits.forms(args.workload).items():
                bench.reset()
                print(f"limit {name}: {form(work.data):.2f}s", flush=True)
            bench.reset()
            start = time.perf_counter()
            result = process_pipeline(spec)
            assert result["status"] == "succeeded", result.get("error")
            print(f"pipeline: {time.perf_counter() - start:.2f}s", flush=True)
        bench.reset()
        profiler = cProfile.Profile()
        with CaptureQueriesContext(connection) as queries:
            start = time.perf_counter()
            if args.top:
                profiler.enable()
            result = process_pipeline(spec)
            profiler.disable()
            elapsed = time.perf_counter() - start
        assert result["status"] == "succeeded", result.get("error")
        by_kind: dict[str, list[float]] = {}
        for q in queries.captured_queries:
            key = " ".join(q["sql"].split()[:3])[:60]
            by_kind.setdefault(key, []).append(float(q["time"]))
        total = sum(sum(times) for times in by_kind.values())
        print(
            f"pipeline: {elapsed:.2f}s{' (profiled)' if args.top else ''}, "
            f"{len(queries.captured_queries)} statements taking {total:.2f}s"
        )
        for key, times in sorted(by_kind.items(), key=lambda kv: -sum(kv[1]))[:15]:
            print(f"  {len(times):6d} x {sum(times):7.2f}s  {key}")
        if args.top:
            stats = pstats.Stats(profiler)
            stats.sort_stats("cumulative").print_stats(args.top)
            stats.sort_stats("tottime").print_stats(args.top)
        connection.close()


if __name__ == "__main__":
    main()
