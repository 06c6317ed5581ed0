"""Time and profile one workload of ``benchmarks/pipeline.py`` in-process (the supplier
upsert by default): ``--repeat`` rounds of the limit's forms and the pipeline, alternating,
without a profiler; then the pipeline once more with cProfile, its statements summed by kind
(what is left outside the database is the Python side). ``--top 0``: no profile.

    python benchmarks/profile_upsert.py --db sqlite|postgres --n 100000
        [--workload upsert|map|adjust_prices|delete_products] [--repeat 1] [--top 30]
        [--reuse] [--no-limit | --no-pipeline] [--forms array,copy] [--explain SECONDS] [--dump FILE]

``--reuse`` (PostgreSQL): keep the database ``BENCH_PG_DB`` names when it holds a catalogue
of ``--n`` products already (a 1,000,000-product load takes minutes), reset it instead of
re-creating it; the database is left in place for inspection (``EXPLAIN``) afterwards.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import PG_ADMIN, fresh_database_url, setup_django

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--db", default="sqlite")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workload", default="upsert")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument(
        "--explain",
        type=float,
        default=0,
        help="PostgreSQL: print the plan (auto_explain, ANALYZE, BUFFERS) of every statement "
        "taking at least this many seconds (the limit's and the pipeline's; times inflated)",
    )
    parser.add_argument(
        "--no-limit", action="store_true", help="time the pipeline only in the rounds"
    )
    parser.add_argument("--no-pipeline", action="store_true", help="time the limit's forms only")
    parser.add_argument("--forms", help="the limit's forms to time (comma-separated; default all)")
    parser.add_argument("--dump", help="write the profiled run's statements (JSON) to this file")
    parser.add_argument(
        "--reuse", action="store_true", help="PostgreSQL: keep a database loaded with --n products"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="stockpipe-prof-") as tmp:
        reused = args.reuse and args.db == "postgres" and _loaded(PG_NAME) == args.n
        url = _pg_url(PG_NAME) if reused else fresh_database_url(args.db, Path(tmp), PG_NAME)
        setup_django(url)
        import pipeline as bench
        from django.db import connection
        from django.test.utils import CaptureQueriesContext
        from pipeline_limits import Limits

        from app import conf
        from app.utils.utils import process_pipeline

        if reused:
            print(f"reusing {PG_NAME} ({args.n} products)", flush=True)
        else:
            bench.load_products(args.n)
        work = bench.Workload(args.workload, args.n)
        limits = Limits(
            connection, conf.default_location(), conf.low_stock_threshold(), verbose=True
        )
        spec = {"name": "profile", "steps": work.steps}
        if args.explain and connection.vendor == "postgresql":
            _auto_explain(connection, args.explain)
        for _round in range(args.repeat):
            forms = {} if args.no_limit else limits.forms(args.workload)
            for name, form in forms.items():
                if args.forms and name not in args.forms.split(","):
                    continue
                bench.reset()
                print(f"limit {name}: {form(work.data):.2f}s", flush=True)
            if args.no_pipeline:
                continue
            bench.reset()
            start = time.perf_counter()
            result = process_pipeline(spec)
            assert result["status"] == "succeeded", result.get("error")
            print(f"pipeline: {time.perf_counter() - start:.2f}s", flush=True)
        if args.no_pipeline:
            return
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
        if args.dump:
            Path(args.dump).write_text(json.dumps(queries.captured_queries, indent=1))
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


def _auto_explain(connection, seconds: float) -> None:
    """Have the server send the plan of each statement of this session taking ``seconds``
    or more (with actual rows, times and buffers) as a notice, printed as it comes."""
    connection.ensure_connection()
    connection.connection.add_notice_handler(
        lambda diag: print(diag.message_primary or "", flush=True)
    )
    with connection.cursor() as cursor:
        cursor.execute("LOAD 'auto_explain'")
        for name, value in (
            ("log_min_duration", f"{int(seconds * 1000)}ms"),
            ("log_analyze", "on"),
            ("log_buffers", "on"),
            ("log_nested_statements", "on"),
            ("log_level", "notice"),
        ):
            cursor.execute(f"SET auto_explain.{name} = '{value}'")


def _pg_url(name: str) -> str:
    return f"{PG_ADMIN.rsplit('/', 1)[0]}/{name}"


def _loaded(name: str) -> int | None:
    """How many products the pristine catalogue of database ``name`` holds (None: none)."""
    import psycopg

    try:
        with psycopg.connect(_pg_url(name)) as conn:
            return conn.execute("SELECT count(*) FROM bench_pristine").fetchone()[0]
    except psycopg.Error:
        return None


if __name__ == "__main__":
    main()
