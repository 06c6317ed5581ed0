#!/usr/bin/env python
"""Reservations on one hot product: concurrent API clients against the shipped server, next
to the raw limit measured in the same run on the same PostgreSQL database.

    python benchmarks/reservations.py [--requests 6000] [--clients 8] [--repeat 2] [--check]
    python benchmarks/reservations.py --quick       # smoke run, well under a minute

* api:   ``deploy/run`` as README's "Deployment" says (production settings, gunicorn with
         ``deploy/gunicorn.conf.py`` behind nginx over TLS, Redis cache, the task worker);
         ``--clients`` processes, each with one keep-alive HTTPS connection, send
         ``POST /api/reservations`` (quantity 1) for the one product: 201 held, 409 refused.
* limit: ``--clients`` processes, each with its own psycopg connection, per reservation one
         transaction: ``UPDATE app_product SET stock = stock - 1 WHERE id = .. AND stock >= 1
         RETURNING stock`` (the availability check and the row lock in one statement), then
         the rows the service writes for a hold (the reservation, and the task row of its
         deferred expiry when the task backend defers), ``COMMIT``. Like the service, each
         process writes one expiry task per second of due time (``run_after`` = the hold's
         ``expires_at`` rounded up to the second), once that task has committed.
* floor: not a side of the ratio; before each round's api side, the same clients send
         ``GET /api/products/<sku>`` with the same token, answered from the cache (no SQL):
         what any authenticated API request costs on this stack before it does any work.

The product has ``--requests`` x 0.9 units, so on both sides the same number of requests
succeed and the last tenth is refused. After each side the rows are counted (reservations,
units held, refusals, holds without a pending expiry task due within the second after their
``expires_at``: none) and must be the same; then everything is reset.
Target: api >= 0.5x the limit's requests/s (``--check`` exits 1 when missed).
Env: BENCH_PG_DB (database, dropped and re-created), BENCH_REDIS_URL (that database is
flushed; default redis://127.0.0.1:6379/8).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

from common import DeployedStack, fresh_database_url, percentiles

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench_reservations")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
SKU = "HOT-1"
TARGET = 0.5

SEED = """
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from app.models import Product
from app.services.tokens import create_token
user = get_user_model().objects.create_user("bench", password="bench-password-1")
user.user_permissions.add(Permission.objects.get(codename="add_reservation"))
product = Product.objects.create(sku=%(sku)r, name="Hot product", price="9.99", stock=%(stock)d)
print(user.pk, product.pk, create_token(user, "bench")[1])
"""

HOLD = (
    "INSERT INTO app_reservation (product_id, sku, location_id, quantity, reference, status, "
    "expires_at, idempotency_key, created_at, ended_at, changed_by_id, source) "
    "VALUES (%s, %s, NULL, 1, %s, 'active', %s, NULL, now(), NULL, %s, 'api') RETURNING id"
)
TASK = (
    "INSERT INTO django_tasks_database_dbtaskresult (id, status, enqueued_at, args_kwargs, "
    "priority, task_path, worker_ids, queue_name, backend_name, run_after, "
    "exception_class_path, traceback) SELECT gen_random_uuid(), status, now(), args_kwargs, "
    "priority, task_path, worker_ids, queue_name, backend_name, %s, '', '' FROM django_tasks_database_dbtaskresult WHERE id = %s"
)


# --- the two sides, one function per client process ---------------------------------------


def _finished(start: float, times: list[float], held: int, refused: int) -> dict:
    return {
        "start": start,
        "end": time.perf_counter(),
        "times": times,
        "held": held,
        "refused": refused,
    }


def api_client(stack_url: str, ca: str, token: str, n: int, name: str, barrier, out) -> None:
    conn, headers = _https(stack_url, ca, token)
    times, held, refused = [], 0, 0
    barrier.wait()
    start = time.perf_counter()
    for i in range(n):
        body = json.dumps({"sku": SKU, "quantity": 1, "reference": f"{name}-{i}"})
        t = time.perf_counter()
        conn.request("POST", "/api/reservations", body, headers)
        response = conn.getresponse()
        data = response.read()
        times.append(time.perf_counter() - t)
        if response.status == 201:
            held += 1
        elif response.status == 409 and json.loads(data).get("available") == 0:
            refused += 1
        else:
            out.put({"error": f"{response.status} {data[:300]!r}"})
            return
    out.put(_finished(start, times, held, refused))


def floor_client(stack_url: str, ca: str, token: str, n: int, name: str, barrier, out) -> None:
    """The cheapest authenticated API request on the same stack: ``GET /api/products/<sku>``
    with the same bearer token, answered from the shared cache (token and body from the
    near cache: no SQL, at most one Redis round trip). What every API request pays before
    it does any work of its own (nginx TLS, gunicorn, middleware, authentication, Ninja)."""
    conn, headers = _https(stack_url, ca, token)
    times = []
    barrier.wait()
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", f"/api/products/{SKU}", headers=headers)
        response = conn.getresponse()
        data = response.read()
        times.append(time.perf_counter() - t)
        if response.status != 200:
            out.put({"error": f"{response.status} {data[:300]!r}"})
            return
    out.put(_finished(start, times, 0, 0))


def _https(stack_url: str, ca: str, token: str) -> tuple[http.client.HTTPSConnection, dict]:
    """One keep-alive HTTPS connection, its TLS handshake done (not timed), and the headers."""
    import ssl

    parts = urlsplit(stack_url)
    conn = http.client.HTTPSConnection(
        parts.hostname, parts.port, context=ssl.create_default_context(cafile=ca)
    )
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    conn.request("GET", "/api/auth/me", headers=headers)  # TLS handshake before the start
    conn.getresponse().read()
    return conn, headers


def limit_client(db_url: str, ids: dict, n: int, name: str, barrier, out) -> None:
    import psycopg

    conn = psycopg.connect(db_url)
    times, held, refused = [], 0, 0
    scheduled = None  # the sweep this process has committed a task for (as the service)
    barrier.wait()
    start = time.perf_counter()
    for i in range(n):
        t = time.perf_counter()
        row = conn.execute(
            "UPDATE app_product SET stock = stock - 1 WHERE id = %s AND stock >= 1 RETURNING stock",
            (ids["product"],),
        ).fetchone()
        if row is None:
            refused += 1
        else:
            expires_at = datetime.now(UTC) + timedelta(minutes=15)
            due = expires_at.replace(microsecond=0) + timedelta(seconds=1)
            conn.execute(HOLD, (ids["product"], SKU, f"{name}-{i}", expires_at, ids["user"]))
            if ids["task"] is not None and due != scheduled:
                conn.execute(TASK, (due, ids["task"]))
            else:
                due = scheduled
            held += 1
        conn.commit()
        if row is not None:
            scheduled = due
        times.append(time.perf_counter() - t)
    out.put(_finished(start, times, held, refused))
    conn.close()


def drive(target, args_of, clients: int, requests: int) -> dict:
    """Run ``clients`` processes of ``target``, released together; their totals."""
    ctx = multiprocessing.get_context("fork")
    barrier, out = ctx.Barrier(clients + 1), ctx.Queue()
    shares = [requests // clients + (c < requests % clients) for c in range(clients)]
    procs = [
        ctx.Process(target=target, args=(*args_of, shares[c], f"c{c}", barrier, out))
        for c in range(clients)
    ]
    for p in procs:
        p.start()
    barrier.wait(timeout=120)
    results = [out.get(timeout=600) for _ in procs]
    for p in procs:
        p.join()
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise SystemExit(f"a client failed: {errors[0]}")
    times = [t for r in results for t in r["times"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    p50, p99 = percentiles(times)
    return {
        "rps": len(times) / wall,
        "p50_ms": p50 * 1000,
        "p99_ms": p99 * 1000,
        "held": sum(r["held"] for r in results),
        "refused": sum(r["refused"] for r in results),
    }


# --- database state -----------------------------------------------------------------------


def reset(db_url: str, ids: dict, stock: int) -> None:
    """No holds, no tasks, ``stock`` units (not timed)."""
    import psycopg

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DELETE FROM app_reservation")
        conn.execute(
            "DELETE FROM django_tasks_database_dbtaskresult WHERE id <> %s", (ids["task"],)
        )
        conn.execute(
            "UPDATE app_product SET stock = %s, reserved = 0 WHERE id = %s",
            (stock, ids["product"]),
        )
        conn.execute(
            "UPDATE app_stocklevel SET reserved = 0 WHERE product_id = %s", (ids["product"],)
        )
        conn.execute("VACUUM ANALYZE app_reservation, django_tasks_database_dbtaskresult")


def counted(db_url: str, ids: dict) -> dict:
    import psycopg

    with psycopg.connect(db_url) as conn:
        holds, units = conn.execute(
            "SELECT count(*), coalesce(sum(quantity), 0) FROM app_reservation "
            "WHERE product_id = %s AND status = 'active'",
            (ids["product"],),
        ).fetchone()
        (tasks,) = conn.execute(
            "SELECT count(*) FROM django_tasks_database_dbtaskresult WHERE id <> %s "
            "AND task_path LIKE %s",
            (ids["task"], "%expire_reservations"),
        ).fetchone()
        # Holds no pending sweep serves within the second after they fall due.
        (uncovered,) = conn.execute(
            "SELECT count(*) FROM app_reservation r WHERE product_id = %s "
            "AND status = 'active' AND NOT EXISTS (SELECT 1 FROM "
            "django_tasks_database_dbtaskresult t WHERE t.task_path LIKE %s "
            "AND t.status = 'READY' AND t.run_after >= r.expires_at "
            "AND t.run_after < r.expires_at + interval '1 second')",
            (ids["product"], "%expire_reservations"),
        ).fetchone()
        stock, reserved = conn.execute(
            "SELECT stock, reserved FROM app_product WHERE id = %s", (ids["product"],)
        ).fetchone()
    return {
        "reservations": holds,
        "units_held": units,
        "task_rows": tasks,  # reported, not compared: per second of due time and process
        "uncovered": uncovered,
        "stock": stock,
        "reserved": reserved,  # the product's counter of held units (issue 14)
    }


def check_same_work(label: str, run: dict, rows: dict, expected: dict) -> None:
    got = {**rows, "held": run["held"], "refused": run["refused"]}
    wrong = {k: (got[k], v) for k, v in expected.items() if got[k] != v}
    if wrong:
        raise SystemExit(f"{label} did not do the expected work (got, expected): {wrong}")


def first_task(db_url: str, stack: DeployedStack, token: str) -> str | None:
    """One reservation through the API, so the task row of its expiry (if the backend
    defers) can serve the limit as the template of the row it writes."""
    import psycopg

    request = http.client.HTTPSConnection(
        urlsplit(stack.url).hostname, urlsplit(stack.url).port, context=stack.tls()
    )
    body = json.dumps({"sku": SKU, "quantity": 1})
    request.request(
        "POST",
        "/api/reservations",
        body,
        {"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = request.getresponse()
    if response.status != 201:
        raise SystemExit(f"the first reservation answered {response.status}: {response.read()!r}")
    request.close()
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT id FROM django_tasks_database_dbtaskresult "
            "WHERE task_path LIKE %s ORDER BY enqueued_at DESC LIMIT 1",
            ("%expire_reservations",),
        ).fetchone()
    return str(row[0]) if row else None


# --- the run ------------------------------------------------------------------------------


def line(label: str, r: dict) -> str:
    return f"{label:48} {r['rps']:8.0f} {r['p50_ms']:8.2f} {r['p99_ms']:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=6_000, help="per side and round")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--repeat", type=int, default=2, help="alternating rounds; best counts")
    parser.add_argument("--ports", type=int, help="first of 3 ports for the stack (default: free)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 400 requests, 1 round")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    if args.quick:
        args.requests, args.repeat = 400, 1
    stock = args.requests * 9 // 10

    with tempfile.TemporaryDirectory(prefix="stockpipe-bench-") as tmp:
        os.chmod(tmp, 0o755)  # nginx's workers read its run directory
        db_url = fresh_database_url("postgres", Path(tmp), PG_NAME)
        started = time.monotonic()
        with DeployedStack(db_url, REDIS_URL, Path(tmp), args.ports) as stack:
            print(f"stack up after {time.monotonic() - started:.0f} s", flush=True)
            # deploy/gunicorn.conf.py's default, unless WEB_CONCURRENCY says otherwise
            workers = os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1)
            user, product, token = stack.manage_shell(SEED % {"sku": SKU, "stock": stock}).split()
            ids = {"user": int(user), "product": int(product)}
            # Granting the permission voided the cached permissions for 10 s (a tombstone,
            # app.services.permissions); a steady deployment does not change them per second.
            time.sleep(11)
            # Not a side of the ratio: how fast the stack answers any API request. Measured
            # while no tombstone of the product's body (cache_guard.TOMBSTONE_TTL, 10 s)
            # lives, so it is served from the cache: first before any hold (creating the
            # product wrote none), then in each later round once the last hold's expired.
            client_args = (stack.url, str(stack.ca), token)
            floors = [drive(floor_client, client_args, args.clients, args.requests)]
            ids["task"] = first_task(db_url, stack, token)
            written = time.monotonic()  # the API's last write
            same = {
                "held": stock,  # 201s / successful UPDATEs
                "refused": args.requests - stock,  # 409s with available 0 / UPDATEs of no row
                "reservations": stock,  # active rows counted afterwards
                "units_held": stock,
                # every hold has its expiry sweep (when the backend defers)
                "uncovered": 0 if ids["task"] is not None else stock,
            }
            print(
                f"== PostgreSQL, shipped stack (deploy/run: nginx TLS, gunicorn {workers} sync "
                f"workers, production settings, Redis cache); {args.clients} clients, one "
                f"product, {args.requests:,} reservations per side and round, {stock:,} units",
                flush=True,
            )
            apis, limits = [], []
            for attempt in range(args.repeat):
                reset(db_url, ids, stock)
                try:
                    if attempt:
                        time.sleep(max(0.0, written + 11 - time.monotonic()))
                        floors.append(drive(floor_client, client_args, args.clients, args.requests))
                    apis.append(drive(api_client, client_args, args.clients, args.requests))
                    written = time.monotonic()
                except SystemExit as failed:  # the stack's log says why (a 500's traceback)
                    tail = stack.log.read_text(errors="replace").splitlines()[-60:]
                    raise SystemExit(f"{failed}; deploy/run's log:\n" + "\n".join(tail)) from None
                api_rows = counted(db_url, ids)
                check_same_work(
                    "api", apis[-1], api_rows, {**same, "stock": stock, "reserved": stock}
                )
                reset(db_url, ids, stock)
                limits.append(drive(limit_client, (db_url, ids), args.clients, args.requests))
                # The limit keeps availability in the stock column: all of it went.
                limit_rows = counted(db_url, ids)
                check_same_work(
                    "limit", limits[-1], limit_rows, {**same, "stock": 0, "reserved": 0}
                )
                print(
                    f"  round {attempt + 1}/{args.repeat}: floor {floors[-1]['rps']:.0f} req/s, "
                    f"api {apis[-1]['rps']:.0f} req/s, "
                    f"limit {limits[-1]['rps']:.0f} req/s; expiry task rows: api "
                    f"{api_rows['task_rows']}, limit {limit_rows['task_rows']}",
                    flush=True,
                )
    api = max(apis, key=lambda r: r["rps"])
    limit = max(limits, key=lambda r: r["rps"])
    floor = max(floors, key=lambda r: r["rps"])
    ratio = api["rps"] / limit["rps"]
    print(
        f"best of {args.repeat} round(s) each; both sides: {stock:,} held, "
        f"{args.requests - stock:,} refused (409), rows counted after each"
    )
    print(f"{'side':48} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    print(line("api: POST /api/reservations (nginx, gunicorn)", api))
    print(line("limit: UPDATE ... RETURNING + INSERTs, psycopg", limit))
    print(line("floor: GET /api/products/<sku> (cached, bearer)", floor))
    print(
        f"floor/limit: {floor['rps'] / limit['rps']:.2f} (the most any API request reaches "
        f"on this stack); api/floor: {api['rps'] / floor['rps']:.2f}"
    )
    verdict = "OK" if ratio >= TARGET else "BELOW TARGET"
    print(f"throughput ratio api/limit: {ratio:.2f} (target >= {TARGET}) {verdict}")
    result = {
        "clients": args.clients,
        "requests": args.requests,
        "repeat": args.repeat,
        "gunicorn_workers": int(workers),
        "api": {k: round(v, 2) for k, v in api.items()},
        "limit": {k: round(v, 2) for k, v in limit.items()},
        "floor": {k: round(v, 2) for k, v in floor.items()},
        "ratio": round(ratio, 2),
    }
    print("RESULT " + json.dumps(result), flush=True)
    if args.check and ratio < TARGET:
        sys.exit(1)


if __name__ == "__main__":
    main()
