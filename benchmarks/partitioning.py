#!/usr/bin/env python
"""How long ``partition_tables --apply`` takes on a populated ledger, and how long writers
wait meanwhile.

``BENCH_DATABASE_URL=postgres://.../<db> .venv/bin/python benchmarks/partitioning.py [--rows N]``
migrates that database (it must exist; its price history, ledger and outbox are emptied),
fills the ledger with N rows over a year (plain SQL), then converts the ledger while a
writer thread inserts one ledger row after another through the ORM. It prints the time of
each step and the writer's longest and median insert time during the conversion.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=200_000)
    args = parser.parse_args()
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        print("set BENCH_DATABASE_URL to a PostgreSQL database that may be emptied")
        return 2
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockpipe.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection, connections
    from django.utils import timezone

    from app.models import Location, StockMovement
    from app.services import partitioning

    call_command("migrate", verbosity=0)
    with connection.cursor() as cursor:
        for spec in partitioning.TABLES:
            if partitioning.is_partitioned(spec.table):
                print(f"{spec.table} is partitioned already: use a fresh database")
                return 2
        cursor.execute("TRUNCATE app_stockmovement, app_webhookattempt, app_webhookdelivery")
    place = Location.objects.get_or_create(code="MAIN", defaults={"name": "Main"})[0]
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO app_stockmovement (source, sku, delta, stock_after, reason, "
            "idempotency_key, created_at, location_id) "
            "SELECT 'bench', 'SKU-' || (g %% 1000), 1, g, 'fill', "
            "CASE WHEN g %% 10 = 0 THEN 'key-' || g END, "
            "now() - (g::float / %s) * interval '365 days', %s "
            "FROM generate_series(1, %s) g",
            [args.rows, place.pk, args.rows],
        )
        cursor.execute("ANALYZE app_stockmovement")
    print(f"filled {args.rows} ledger rows in {time.perf_counter() - started:.1f} s")

    waits: list[float] = []
    stop = threading.Event()

    def writer() -> None:
        try:
            while not stop.is_set():
                t0 = time.perf_counter()
                StockMovement.objects.create(
                    location=place, sku="W", delta=1, stock_after=1, created_at=timezone.now()
                )
                waits.append(time.perf_counter() - t0)
        finally:
            connections.close_all()

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(0.5)
    marks = [("start", time.perf_counter())]
    partitioning.convert(
        only=("ledger",), say=lambda line: marks.append((line, time.perf_counter()))
    )
    marks.append(("done", time.perf_counter()))
    time.sleep(0.5)
    stop.set()
    thread.join()
    for (what, at), (_, nxt) in itertools.pairwise(marks[1:]):
        print(f"{nxt - at:8.2f} s  {what.split(':', 1)[1].strip()[:90]}")
    print(f"conversion: {marks[-1][1] - marks[0][1]:.2f} s in all")
    print(
        f"writer: {len(waits)} inserts, median {statistics.median(waits) * 1000:.1f} ms, "
        f"longest {max(waits) * 1000:.0f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
