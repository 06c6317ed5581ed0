#!/usr/bin/env python
"""Pages a request reads from outside PostgreSQL's shared buffers, on products no earlier
request read: what a cold request costs in reads, whatever the OS cache holds.

    BENCH_PG_DB=sp_bench_readpaths .venv/bin/python benchmarks/readpaths_blocks.py \\
        --only "price history deep" --products 40 --seed 71

On the database ``benchmarks/readpaths.py`` built (run it first; this script only reads).
In this process (production settings, a cache of its own), for ``--products`` products of
each endpoint's choice drawn with ``--seed``: the request runs under the test client, and
each of its SELECTs is explained (``ANALYZE, BUFFERS``, ``track_io_timing``) just before it
runs, so the plan shows the pages it was the first to need. Prints per endpoint the mean
and maximum of the pages read (``read=``) and found (``hit=``) per request, and the time the
reads took. Whether a read came from the OS cache or the disk is the machine's: the count is
the read path's own. A product is drawn once per run; another seed draws other products.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import tempfile
from functools import partial
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import readpaths
from common import ROOT, production_env

BUFFERS = re.compile(r"Buffers: shared(?: hit=(\d+))?(?: read=(\d+))?")
IO = re.compile(r"I/O Timings: (?:shared(?:/local)? )?read=([\d.]+)")


def _explain_first(stats: list[tuple[int, int, float]], execute, sql, params, many, context):
    """Each SELECT explained just before it runs: (hit, read, read ms) of its top node."""
    import psycopg

    select = readpaths.DECLARE.sub("", sql)
    if not many and select.lstrip().upper().startswith(("SELECT", "WITH")):
        with psycopg.ClientCursor(context["connection"].connection) as cursor:
            cursor.execute("SET track_io_timing = on")  # a connection may serve one request
            cursor.execute("EXPLAIN (ANALYZE, BUFFERS) " + select, params)
            plan = "\n".join(row[0] for row in cursor.fetchall())
        found = BUFFERS.search(plan)
        io = IO.search(plan)
        hit, read = (int(found.group(1) or 0), int(found.group(2) or 0)) if found else (0, 0)
        stats.append((hit, read, float(io.group(1)) if io else 0.0))
    return execute(sql, params, many, context)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", required=True, help="endpoints, as readpaths.py --only")
    parser.add_argument("--products", type=int, default=40)
    parser.add_argument("--seed", type=int, default=71)
    args = parser.parse_args()
    shape = readpaths.Shape(1_000_000, 10_000_000, 10_000_000)
    static = Path(tempfile.gettempdir()) / "stockpipe-readpaths-static"
    env = production_env(
        readpaths.database_url(), STATIC_ROOT=str(static), ALLOWED_HOSTS="127.0.0.1,testserver"
    )
    os.environ.update({**env, "CACHE_URL": "locmemcache://"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test import Client

    if readpaths.recorded(shape) is None:
        raise SystemExit(f"{readpaths.PG_NAME} is not readpaths.py's database of {shape}")
    _, token = readpaths.reader()
    client = Client()
    client.force_login(get_user_model().objects.get(username="bench-reader"))
    rng = random.Random(args.seed)
    print(f"{args.products} products per endpoint, seed {args.seed}; per request:")
    for endpoint in readpaths.endpoints(shape, args.only):
        reads, hits, ms = [], [], []
        for i in rng.sample(endpoint.products, min(args.products, len(endpoint.products))):
            path = readpaths.url_for(endpoint, i, rng)
            headers = {"Authorization": f"Bearer {token}"} if path.startswith("/api/") else {}
            stats: list[tuple[int, int, float]] = []
            with connection.execute_wrapper(partial(_explain_first, stats)):
                assert client.get(path, headers=headers).status_code == 200, path
            hits.append(sum(s[0] for s in stats))
            reads.append(sum(s[1] for s in stats))
            ms.append(sum(s[2] for s in stats))
        print(
            f"  {endpoint.label:36s} read {statistics.mean(reads):6.1f} (max {max(reads):4d})  "
            f"hit {statistics.mean(hits):6.1f}  read time {statistics.mean(ms):6.2f} ms "
            f"(max {max(ms):6.2f})",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
