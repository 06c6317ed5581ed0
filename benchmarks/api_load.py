#!/usr/bin/env python
"""Throughput and latency of ``GET /api/products/<sku>`` against a bare Django view.

One command: ``.venv/bin/python benchmarks/api_load.py``. It builds a fresh PostgreSQL
database (BENCH_DATABASE_URL, default ``postgres://postgres@127.0.0.1:5432/stockpipe_bench_api``),
seeds products, a user and an API token, starts gunicorn (2 sync workers, production
settings) and drives it with ``wrk`` from a separate process: first the bare view
(``/bench/constant``, a constant JSON body of the same size, same middleware, same server),
then the API endpoint with a bearer token and random SKUs, alternating for ROUNDS rounds,
after reading every product once (the API's shared response cache is then warm).
It prints requests/s and p50/p99 latency of each and the API/bare throughput ratio
(target >= 0.6). Exit code 1 if the target is missed, 2 if a tool is missing.

It installs nothing: it needs ``wrk`` (Debian: ``apt-get install wrk``), gunicorn and psycopg.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import urllib.request
from pathlib import Path

from common import free_port, gunicorn, production_env, recreate_postgres

ROOT = Path(__file__).resolve().parent.parent
PY = sys.executable
TARGET = 0.6

LUA = """
math.randomseed(os.time())
local n = %(n)d
request = function()
  local sku = string.format("BENCH-%%05d", math.random(0, n - 1))
  return wrk.format("GET", "/api/products/" .. sku, {["Authorization"] = "Bearer %(token)s"})
end
"""


def fail(message: str, code: int = 2) -> None:
    print(f"api_load: {message}", file=sys.stderr)
    sys.exit(code)


SEED = """
from decimal import Decimal
from django.contrib.auth import get_user_model
from app.models import Product
from app.services.tokens import create_token
Product.objects.bulk_create(
    [Product(sku=f"BENCH-{i:05d}", name=f"Benchmark product {i}", price=Decimal("19.99"),
             stock=500) for i in range(%(n)d)]
)
user = get_user_model().objects.create_user("bench", password="bench-password-1")
print(create_token(user, "bench")[1])
"""


def wrk(url: str, *, seconds: int, connections: int, script: str | None = None) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        cmd += ["-s", script]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    latency = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", out, re.M))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    if non2xx or errors:
        fail(
            f"load run had errors: {non2xx and non2xx.group(0)} {errors and errors.group(0)}\n{out}",
            1,
        )
    return {"rps": rps, "p50": to_ms(latency["50"]), "p99": to_ms(latency["99"])}


def to_ms(value: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", value).groups()
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def measure(base: str, token: str, lua: str, args) -> tuple[list[dict], list[dict]]:
    """Warm the server up, then alternate the bare view and the API for ``args.rounds``."""
    # Sanity: the API answers 200 with the token.
    request = urllib.request.Request(
        f"{base}/api/products/BENCH-00001", headers={"Authorization": f"Bearer {token}"}
    )
    assert urllib.request.urlopen(request, timeout=5).status == 200

    # Warm-up. With a shared cache (Redis here, as in production) the API serves
    # product bodies from it: read every product once first, so the rounds measure the
    # steady state; entries still expire (60 s, see app.services.product_cache) and are
    # refilled during the rounds like in production.
    for i in range(args.products):
        request = urllib.request.Request(
            f"{base}/api/products/BENCH-{i:05d}", headers={"Authorization": f"Bearer {token}"}
        )
        urllib.request.urlopen(request, timeout=5).read()
    wrk(f"{base}/bench/constant", seconds=2, connections=args.connections)
    wrk(base, seconds=2, connections=args.connections, script=lua)
    bare, api = [], []
    for _ in range(args.rounds):
        bare.append(
            wrk(f"{base}/bench/constant", seconds=args.seconds, connections=args.connections)
        )
        api.append(wrk(base, seconds=args.seconds, connections=args.connections, script=lua))
    return bare, api


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=int, default=10, help="per measurement")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--products", type=int, default=1000)
    args = parser.parse_args()

    if shutil.which("wrk") is None:
        fail("wrk is not installed (Debian/Ubuntu: apt-get install -y wrk)")
    if not Path(PY).with_name("gunicorn").exists():
        fail(f"gunicorn is not installed next to {PY} (uv pip install gunicorn)")

    db_url = os.environ.get(
        "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/stockpipe_bench_api"
    )
    if not db_url.startswith("postgres"):
        fail("BENCH_DATABASE_URL must be a PostgreSQL URL")
    env = production_env(db_url)
    recreate_postgres(db_url)
    run = dict(cwd=ROOT, env=env, check=True)
    subprocess.run([PY, "manage.py", "migrate", "--noinput", "-v0"], **run)
    token = (
        subprocess.run(
            [PY, "manage.py", "shell", "-v0", "-c", SEED % {"n": args.products}],
            capture_output=True,
            text=True,
            **run,
        )
        .stdout.strip()
        .splitlines()[-1]
    )

    with tempfile.NamedTemporaryFile("w", suffix=".lua") as lua:
        lua.write(LUA % {"n": args.products, "token": token})
        lua.flush()
        try:
            with gunicorn(env, free_port()) as base:
                bare, api = measure(base, token, lua.name, args)
        except RuntimeError as exc:
            fail(str(exc), 1)

    def summary(runs):
        return {k: statistics.median(r[k] for r in runs) for k in ("rps", "p50", "p99")}

    b, a = summary(bare), summary(api)
    ratio = a["rps"] / b["rps"]
    print(
        f"gunicorn 2 sync workers, PostgreSQL, wrk -c{args.connections}, "
        f"{args.rounds} x {args.seconds}s each (medians)"
    )
    print(f"{'endpoint':36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'bare view GET /bench/constant':36} {b['rps']:9.0f} {b['p50']:8.2f} {b['p99']:8.2f}")
    print(
        f"{'API GET /api/products/<sku> (token)':36} {a['rps']:9.0f} {a['p50']:8.2f} {a['p99']:8.2f}"
    )
    verdict = "OK" if ratio >= TARGET else "BELOW TARGET"
    print(f"throughput ratio API/bare: {ratio:.2f} (target >= {TARGET}) {verdict}")
    sys.exit(0 if ratio >= TARGET else 1)


if __name__ == "__main__":
    main()
