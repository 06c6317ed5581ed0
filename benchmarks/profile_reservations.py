#!/usr/bin/env python
"""Where a ``POST /api/reservations`` spends its time, in one process: Django's test client
with the production settings on PostgreSQL and the Redis cache (as ``deploy/run`` runs them),
no nginx, no gunicorn. Prints the SQL statements and Redis round trips per request, the
mean time per request, and the top of a cProfile.

    python benchmarks/profile_reservations.py [--requests 500] [--top 40]

Env: BENCH_PG_DB (database, dropped and re-created), BENCH_REDIS_URL (flushed). A diagnosis
tool: performance claims come from ``benchmarks/reservations.py``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, fresh_database_url

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench_reservations") + "_prof"
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--sort", default="cumulative")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="stockpipe-prof-"))
    db_url = fresh_database_url("postgres", tmp, PG_NAME)
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "stockpipe.settings.production",
            "SECRET_KEY": f"prof-{secrets.token_urlsafe(60)}",
            "ALLOWED_HOSTS": "testserver",
            "DATABASE_URL": db_url,
            "REDIS_URL": REDIS_URL,
            "CACHE_URL": REDIS_URL,
            "EMAIL_URL": "memorymail://",
            "STATIC_ROOT": str(tmp / "static"),
        }
    )
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], cwd=ROOT, check=True
    )
    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from redis.connection import AbstractConnection

    from app.models import Product
    from app.services.tokens import create_token

    user = get_user_model().objects.create_user("prof", password="prof-password-1")
    user.user_permissions.add(Permission.objects.get(codename="add_reservation"))
    Product.objects.create(sku="HOT-1", name="Hot", price="9.99", stock=10 * args.requests)
    raw = create_token(user, "prof")[1]
    from app.services import cache_guard

    # Granting the permission invalidated the cached permissions (a tombstone): wait it out.
    time.sleep(cache_guard.TOMBSTONE_TTL + 1)

    trips = {"n": 0, "commands": []}
    sent = AbstractConnection.send_packed_command

    def counting(self, command, check_health=True):
        trips["n"] += 1
        first = command[0] if isinstance(command, list) else command
        trips["commands"].append(bytes(first)[:60])
        return sent(self, command, check_health)

    AbstractConnection.send_packed_command = counting

    client = Client(
        HTTP_AUTHORIZATION=f"Bearer {raw}",
        HTTP_X_FORWARDED_PROTO="https",
        HTTP_X_FORWARDED_FOR="127.0.0.1",
    )

    def post(i: int):
        response = client.post(
            "/api/reservations",
            {"sku": "HOT-1", "quantity": 1, "reference": f"r{i}"},
            content_type="application/json",
            secure=True,
        )
        assert response.status_code == 201, (response.status_code, response.content[:300])

    for i in range(20):  # warm: the token's cache entry, connections, lazy imports
        post(-i - 1)
    trips.update(n=0, commands=[])
    with CaptureQueriesContext(connection) as queries:
        post(0)
    print(f"one request: {len(queries)} SQL statements, {trips['n']} Redis round trips")
    for q in queries.captured_queries:
        print("  SQL  ", q["sql"][:150])
    for c in trips["commands"]:
        print("  REDIS", c)

    started, cpu = time.perf_counter(), time.process_time()
    for i in range(1, 201):
        post(i)
    print(
        f"unprofiled: {(time.perf_counter() - started) * 5:.2f} ms per request, of which "
        f"{(time.process_time() - cpu) * 5:.2f} ms CPU in this process (200 requests)"
    )
    # CPU time: waits on the database and Redis do not count.
    profile = cProfile.Profile(time.process_time)
    started = time.perf_counter()
    profile.enable()
    for i in range(201, 201 + args.requests):
        post(i)
    profile.disable()
    elapsed = time.perf_counter() - started
    print(
        f"profiled: {elapsed / args.requests * 1000:.2f} ms per request ({args.requests}), CPU profile:"
    )
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats(args.sort).print_stats(args.top)
    print(out.getvalue())
    profile.dump_stats(str(tmp / "reservations.prof"))
    print(f"profile saved: {tmp / 'reservations.prof'}")


if __name__ == "__main__":
    main()
