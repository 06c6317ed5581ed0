"""Pipeline benchmark: each workload through the pipeline against its set-based SQL limit,
measured in the same run on the same database, at several catalogue sizes.

    python benchmarks/pipeline.py [--db sqlite|postgres|both] [--sizes 10000,100000,1000000]
                                  [--workloads map,upsert,adjust_prices,delete_products]
                                  [--repeat 3] [--sample 2000] [--memory-rows N] [--quick]

For each database and size it creates a fresh database (a temp SQLite file / PostgreSQL
``stockpipe_bench``, or ``BENCH_PG_DB``), loads ``n`` products (their stock at the default
location, an open low-stock alert for each product below its threshold) and times each
workload, restoring the catalogue before every timed run:

* map:             set every price and adjust every stock (-3..+3): ``set_prices`` +
                   ``adjust_stock``.
* upsert:          a supplier CSV (text, parsed on both sides) of ``n`` rows: 90% existing
                   SKUs (half with new prices, all with new stock), 10% new SKUs.
* adjust_prices:   +10%, rounded to 0.05, on a SKU prefix covering half the catalogue.
* delete_products: 10% of the catalogue.

Routes:

* pipeline: ``process_pipeline`` (validation, run record, locking, every effect: price
            history, ledger, stock levels, alerts opened and resolved, deletion audit...),
            one transaction.
* limit:    the fastest raw set-based SQL for the same effects, in several forms
            (``benchmarks/pipeline_limits.py``); each form is printed, the fastest counts.
* naive:    (map only) the seed's route, one ``save()`` per change with the seed's
            receivers, autocommit; timed on ``--sample`` products, extrapolated to ``n``.

After each run the tables are compared with the pipeline's (row counts and sums of
products, price history, ledger, alerts open and closed, stock levels per location,
deletion audit): a limit that skips work fails the benchmark. Every route runs
``--repeat`` times, alternating; the best time of each counts. Then a scaling table
(seconds, rows/s, limit/pipeline ratio against the targets) is printed, and the peak
memory (VmHWM) of ``manage.py run_pipeline`` upserting a ``--memory-rows`` CSV is measured
in a child process (once per database, at the first size).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from common import bench_parser, fresh_database_url, run_children, setup_django
from pipeline_limits import Limits

ROOT = Path(__file__).resolve().parent.parent
PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench")

TARGET_NAIVE = 30.0
TARGET_MEMORY_MB = 150  # issue 13: a 10,000,000-row CSV upsert streams in under 150 MB
WORKLOADS = ("map", "upsert", "adjust_prices", "delete_products")
TARGETS = {"map": 0.8, "upsert": 0.8, "adjust_prices": 0.5, "delete_products": 0.5}
SIZES = (10_000, 100_000, 1_000_000)

PREFIX = "SKU-A"  # adjust_prices: the even products, half the catalogue
PERCENT, ROUND_TO = Decimal(10), Decimal("0.05")


# --- the catalogue --------------------------------------------------------------------------


def sku(i: int) -> str:
    return f"SKU-{'AB'[i % 2]}{i:07d}"


def initial(i: int) -> tuple[Decimal, int]:
    return Decimal(10 + i % 990) + Decimal(i % 100) / 100, 3 + (i * 37) % 60


PRODUCT_COLUMNS = "id, sku, name, price, stock, low_stock_threshold, created_at, updated_at"


def load_products(n: int) -> None:
    """Insert the catalogue and a pristine copy of it (not timed)."""
    from django.db import connection
    from django.utils import timezone

    from app import conf

    now = timezone.now()
    threshold = conf.low_stock_threshold()
    with connection.cursor() as cursor:
        rows = []
        for i in range(n):
            price, stock = initial(i)
            rows.append((sku(i), f"Product {i}", price, stock, threshold, now, now))
            if len(rows) == 5000 or i == n - 1:
                cursor.executemany(
                    "INSERT INTO app_product (sku, name, price, stock, low_stock_threshold, "
                    "created_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    rows,
                )
                rows = []
        cursor.execute("DROP TABLE IF EXISTS bench_pristine")
        cursor.execute(f"CREATE TABLE bench_pristine AS SELECT {PRODUCT_COLUMNS} FROM app_product")
        cursor.execute("CREATE UNIQUE INDEX bench_pristine_id ON bench_pristine (id)")
        cursor.execute("INSERT INTO app_stocklevel (product_id, location_id, quantity) "
                       f"SELECT id, {main_location()}, stock FROM app_product")  # fmt: skip


def main_location() -> str:
    from app import conf

    return f"(SELECT id FROM app_location WHERE code = '{conf.default_location()}')"


def reset() -> None:
    """Back to the pristine catalogue: products, their stock at the default location, an
    open alert per low product; no history, ledger, audit, runs or tasks (not timed)."""
    from django.db import connection

    main = main_location()
    statements = [
        *(
            f"DELETE FROM {table}"
            for table in (
                "app_pricehistory",
                "app_stockmovement",
                "app_stockalert",
                "app_deletionaudit",
                "app_pipelinerunspec",
                "app_pipelinerun",
                "django_tasks_database_dbtaskresult",
            )
        ),
        # NOT EXISTS, not NOT IN: PostgreSQL answers NOT IN (subquery) with a hashed subplan
        # only while the ids fit in work_mem; at 1,000,000 it scanned them once per row.
        "DELETE FROM app_stocklevel WHERE NOT EXISTS "
        "(SELECT 1 FROM bench_pristine b WHERE b.id = app_stocklevel.product_id)",
        "DELETE FROM app_product WHERE NOT EXISTS "
        "(SELECT 1 FROM bench_pristine b WHERE b.id = app_product.id)",
        f"INSERT INTO app_product ({PRODUCT_COLUMNS}) SELECT {PRODUCT_COLUMNS} "
        "FROM bench_pristine b WHERE NOT EXISTS (SELECT 1 FROM app_product p WHERE p.id = b.id)",
        "UPDATE app_product SET name = b.name, price = b.price, stock = b.stock, "
        "updated_at = b.updated_at FROM bench_pristine b WHERE app_product.id = b.id "
        "AND (app_product.price <> b.price OR app_product.stock <> b.stock "
        "OR app_product.name <> b.name)",
        "INSERT INTO app_stocklevel (product_id, location_id, quantity) "
        f"SELECT b.id, {main}, b.stock FROM bench_pristine b WHERE NOT EXISTS "
        "(SELECT 1 FROM app_stocklevel s WHERE s.product_id = b.id)",
        "UPDATE app_stocklevel SET quantity = b.stock FROM bench_pristine b "
        "WHERE app_stocklevel.product_id = b.id AND app_stocklevel.quantity <> b.stock",
        "INSERT INTO app_stockalert (product_id, sku, name, stock, threshold, opened_at, "
        "delivery_status, attempts, last_error) SELECT id, sku, name, stock, "
        "low_stock_threshold, created_at, 'sent', 1, '' FROM bench_pristine "
        "WHERE stock < low_stock_threshold",
    ]
    with connection.cursor() as cursor:
        for sql in statements:
            cursor.execute(sql)
        if connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE")
            # Every timed run starts from a checkpoint, the reset's writes flushed: a
            # 1,000,000-row run writes gigabytes of WAL and so checkpoints during it, and a
            # run that began with the reset's pages still dirty paid for their flush and
            # its full-page images at a point of its own (one route's round 13 s slower).
            cursor.execute("CHECKPOINT")
        else:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")


# --- workloads ------------------------------------------------------------------------------


class Workload:
    """One workload at size ``n``: the pipeline's spec, the limit's input, the rows it
    processes, and what the pipeline must have done (a check that the reference is real)."""

    def __init__(self, name: str, n: int) -> None:
        self.name, self.n = name, n
        getattr(self, f"_{name}")(n)

    def _map(self, n: int) -> None:
        prices = {sku(i): str(initial(i)[0] + Decimal("1.25")) for i in range(n)}
        deltas = {sku(i): (i % 7) - 3 for i in range(n)}
        self.data, self.rows = (prices, deltas), n
        self.steps = [
            {"op": "set_prices", "prices": prices},
            {"op": "adjust_stock", "deltas": deltas},
        ]
        self.expect = {"price history": n, "ledger": sum(1 for d in deltas.values() if d)}

    def _upsert(self, n: int) -> None:
        """90% existing SKUs (every other pair with a new price, all with a new stock that
        crosses the threshold both ways for some), 10% new ones (some without stock)."""
        lines = ["sku,name,price,stock"]
        existing = n - n // 10
        for i in range(existing):
            price, stock = initial(i)
            if (i // 2) % 2 == 0:
                price += Decimal("0.50")
            lines.append(f"{sku(i)},Product {i},{price},{(stock + 2 + i % 9) % 64}")
        for j in range(n // 10):
            lines.append(f'NEW-{j:07d},"New product {j}, boxed",{5 + j % 100}.99,{j % 40}')
        self.data, self.rows = "\n".join(lines) + "\n", n
        self.steps = [{"op": "upsert_products", "csv": self.data}]
        self.expect = {
            "products": n + n // 10,
            "price history": sum(1 for i in range(existing) if (i // 2) % 2 == 0),
        }

    def _adjust_prices(self, n: int) -> None:
        self.data, self.rows = (PREFIX, PERCENT, ROUND_TO), (n + 1) // 2
        self.steps = [
            {
                "op": "adjust_prices",
                "select": {"sku_prefix": PREFIX},
                "percent": str(PERCENT),
                "round_to": str(ROUND_TO),
            }
        ]
        self.expect = {"price history": self.rows}

    def _delete_products(self, n: int) -> None:
        skus = [sku(i) for i in range(n) if i % 10 == 5]
        self.data, self.rows = skus, len(skus)
        self.steps = [{"op": "delete_products", "skus": skus}]
        self.expect = {"products": n - len(skus), "deletion audit": len(skus)}


def run_pipeline(workload: Workload) -> float:
    from app.utils.utils import process_pipeline

    spec = {"name": f"benchmark {workload.name}", "steps": workload.steps}
    start = time.perf_counter()
    result = process_pipeline(spec)
    elapsed = time.perf_counter() - start
    assert result["status"] == "succeeded", result.get("error")
    return elapsed


# --- what the routes leave behind -------------------------------------------------------


CONTENTS = {
    "products": "SELECT COUNT(*), SUM(ROUND(price * 100)), SUM(stock), SUM(low_stock_threshold), "
    "COUNT(DISTINCT name) FROM app_product",
    "price history": "SELECT COUNT(*), SUM(ROUND(old_price * 100)), SUM(ROUND(new_price * 100)), "
    "COUNT(product_id), COUNT(DISTINCT sku) FROM app_pricehistory",
    "ledger": "SELECT COUNT(*), SUM(delta), SUM(stock_after), COUNT(product_id), "
    "COUNT(DISTINCT sku), COUNT(DISTINCT location_id) FROM app_stockmovement",
    "alerts open": "SELECT COUNT(*), SUM(stock), SUM(threshold), COUNT(product_id), "
    "COUNT(DISTINCT sku) FROM app_stockalert WHERE resolved_at IS NULL",
    "alerts closed": "SELECT COUNT(*), SUM(stock), SUM(threshold), COUNT(product_id), "
    "COUNT(DISTINCT sku) FROM app_stockalert WHERE resolved_at IS NOT NULL",
    "stock levels": "SELECT COUNT(*), SUM(s.quantity), COUNT(DISTINCT s.location_id), "
    "SUM(CASE WHEN l.code = '{main}' THEN s.quantity ELSE 0 END) "
    "FROM app_stocklevel s JOIN app_location l ON l.id = s.location_id",
    "deletion audit": "SELECT COUNT(*), SUM(CAST(object_pk AS INTEGER)), "
    "COUNT(DISTINCT object_repr) FROM app_deletionaudit",
}


def contents() -> dict[str, list]:
    """Row counts and sums of every table a workload writes (numbers as integers)."""
    from django.db import connection

    from app import conf

    found = {}
    with connection.cursor() as cursor:
        for table, sql in CONTENTS.items():
            cursor.execute(sql.replace("{main}", conf.default_location()))
            found[table] = [None if x is None else int(x) for x in cursor.fetchone()]
    return found


def check_same(reference: dict, found: dict, label: str) -> None:
    """``found`` (after the route ``label``) equals the pipeline's ``reference``, and the
    stock levels sum to the products' stock."""
    stock, held = found["products"][2], found["stock levels"][1] or 0
    if stock != held:
        raise SystemExit(f"{label}: the stock levels hold {held}, the products {stock}")
    differ = {t: (reference[t], found[t]) for t in reference if reference[t] != found[t]}
    if differ:
        lines = "\n".join(f"    {t}: pipeline {a}, {label} {b}" for t, (a, b) in differ.items())
        raise SystemExit(f"{label} left different table contents than the pipeline:\n{lines}")


def check_expected(workload: Workload, found: dict) -> None:
    for table, count in workload.expect.items():
        assert found[table][0] == count, (
            f"{workload.name}: {table} has {found[table][0]} rows, expected {count}"
        )


# --- the naive route (the seed) ---------------------------------------------------------------


def seed_pre_save(sender, instance, **kwargs):
    from django.core.mail import send_mail

    if instance.stock < 5:
        send_mail(
            f"Low Stock Alert: {instance.name}",
            f"Only {instance.stock} units remaining",
            "stockpipe@localhost",
            ["manager@company.com"],
        )


def seed_post_save(sender, instance, created, **kwargs):
    from app.models import PriceHistory, Product

    product = Product.objects.get(id=instance.id)
    PriceHistory.objects.create(
        product=product,
        sku=product.sku,
        name=product.name,
        old_price=instance._loaded["price"],
        new_price=product.price,
        changed_at=product.updated_at,
    )


def run_naive(prices: dict[str, str], deltas: dict[str, int]) -> float:
    """The seed: per-object get + save() in autocommit, with the seed's two receivers."""
    from contextlib import ExitStack

    from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

    from app import receivers
    from app.models import Product
    from app.signals import muted

    with ExitStack() as stack:
        for signal, receiver, uid in [
            (pre_save, receivers.product_pre_save, "app.product_pre_save"),
            (post_save, receivers.product_post_save, "app.product_post_save"),
            (pre_delete, receivers.product_pre_delete, "app.product_pre_delete"),
            (post_delete, receivers.product_post_delete, "app.product_post_delete"),
        ]:
            stack.enter_context(muted(signal, receiver, sender=Product, dispatch_uid=uid))
        pre_save.connect(seed_pre_save, sender=Product, dispatch_uid="bench.seed_pre_save")
        post_save.connect(seed_post_save, sender=Product, dispatch_uid="bench.seed_post_save")
        stack.callback(pre_save.disconnect, sender=Product, dispatch_uid="bench.seed_pre_save")
        stack.callback(post_save.disconnect, sender=Product, dispatch_uid="bench.seed_post_save")
        start = time.perf_counter()
        for key, price in prices.items():
            product = Product.objects.get(sku=key)
            product.price = Decimal(price)
            product.save()
        for key, delta in deltas.items():
            product = Product.objects.get(sku=key)
            product.stock += delta
            product.save()
        return time.perf_counter() - start


# --- memory -------------------------------------------------------------------------------


def measure_memory(url: str, rows: int, workdir: Path) -> float:
    """Peak RSS (MB) of ``manage.py run_pipeline`` upserting ``rows`` CSV rows (fresh products)."""
    feed = workdir / "feed.csv"
    with feed.open("w") as fh:
        fh.write("sku,name,price,stock\n")
        for i in range(rows):
            fh.write(f"MEM-{i:08d},Memory product {i},{10 + i % 500}.{i % 100:02d},{i % 50}\n")
    spec = workdir / "memory.json"
    spec.write_text(
        json.dumps({"name": "memory", "steps": [{"op": "upsert_products", "csv_file": "feed.csv"}]})
    )
    # Peak RSS of the child's own image: VmHWM (Linux). ru_maxrss is not used: Linux carries
    # the RSS of the forked copy of this (large) benchmark process over the exec, so it
    # reported this process's size, not the pipeline's (437-483 MB instead of ~80 MB).
    code = (
        "import resource, sys, runpy; sys.argv = ['manage.py', 'run_pipeline', sys.argv[1], '--no-progress'];"
        "\ntry:\n    runpy.run_path('manage.py', run_name='__main__')\nfinally:\n"
        "    try:\n        kb = next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "    except OSError:\n        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "    print('MAXRSS_KB', kb, file=sys.stderr)"
    )
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "stockpipe.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "False",
    }
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code, str(spec)], cwd=ROOT, env=env, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"memory run failed:\n{proc.stdout}\n{proc.stderr}")
    kb = int(
        next(line for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB")).split()[1]
    )
    print(f"  memory: {rows:,} CSV rows upserted in {elapsed:.1f}s, peak RSS {kb / 1024:.0f} MB")
    return kb / 1024


# --- driver ---------------------------------------------------------------------------------


def bench_workload(workload: Workload, limits: Limits, repeat: int) -> dict:
    """Pipeline and every limit form, alternating ``repeat`` times; each run's tables are
    compared with the pipeline's."""
    forms = limits.forms(workload.name)
    times: dict[str, list[float]] = {"pipeline": [], **{form: [] for form in forms}}
    reference = None
    for attempt in range(repeat):
        reset()
        times["pipeline"].append(run_pipeline(workload))
        found = contents()
        check_expected(workload, found)
        if reference is None:
            reference = found
        check_same(reference, found, "pipeline")
        for form, run in forms.items():
            reset()
            times[form].append(run(workload.data))
            check_same(reference, contents(), f"limit ({form})")
        print(
            f"  {workload.name} run {attempt + 1}/{repeat}: "
            + ", ".join(f"{route} {ts[-1]:.2f}s" for route, ts in times.items()),
            flush=True,
        )
    best = {route: min(ts) for route, ts in times.items()}
    pipeline = best.pop("pipeline")
    form = min(best, key=best.get)
    return {
        "workload": workload.name,
        "rows": workload.rows,
        "pipeline_s": round(pipeline, 3),
        "limit_s": round(best[form], 3),
        "limit_form": form,
        "forms_s": {f: round(t, 3) for f, t in best.items()},
        "ratio": round(best[form] / pipeline, 2),
        "target": TARGETS[workload.name],
        "repeat": repeat,
    }


def bench_size(db: str, n: int, args) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="stockpipe-bench-") as tmp:
        workdir = Path(tmp)
        url = fresh_database_url(db, workdir, PG_NAME)
        setup_django(url)
        from django.db import connection

        from app import conf

        print(f"== {db} ({connection.vendor}), n={n:,}", flush=True)
        load_products(n)
        import app.utils.utils  # noqa: F401  (imports are not part of any route's time)

        limits = Limits(
            connection,
            conf.default_location(),
            conf.low_stock_threshold(),
            verbose=bool(os.environ.get("BENCH_VERBOSE")),
        )
        results = []
        for name in args.workloads:
            workload = Workload(name, n)
            result = {"db": db, "n": n, **bench_workload(workload, limits, args.repeat)}
            if name == "map" and args.sample:
                sample = min(args.sample, n)
                prices, deltas = workload.data
                reset()
                naive_sample = run_naive(
                    dict(list(prices.items())[:sample]), dict(list(deltas.items())[:sample])
                )
                naive = naive_sample * n / sample
                print(
                    f"  naive: {naive_sample:.2f}s for {sample:,} -> {naive:.1f}s for {n:,} "
                    "(extrapolated)",
                    flush=True,
                )
                result["naive_s"] = round(naive, 2)
                result["naive_sample"] = sample
                result["speedup_vs_naive"] = round(naive / result["pipeline_s"], 1)
            print(
                f"  => {name}: pipeline {result['pipeline_s']:.2f}s, limit "
                f"{result['limit_s']:.2f}s ({result['limit_form']}; "
                + ", ".join(f"{f} {t:.2f}s" for f, t in result["forms_s"].items())
                + f"): {result['ratio']}x the limit's speed (target >= {result['target']}x)"
                + (
                    f", {result['speedup_vs_naive']}x naive (target >= {TARGET_NAIVE}x)"
                    if "naive_s" in result
                    else ""
                ),
                flush=True,
            )
            print("RESULT " + json.dumps(result), flush=True)
            results.append(result)
        if args.memory_rows:
            peak = measure_memory(url, args.memory_rows, workdir)
            memory = {
                "db": db,
                "n": n,
                "memory_rows": args.memory_rows,
                "peak_memory_mb": round(peak),
            }
            print("RESULT " + json.dumps(memory), flush=True)
            results.append(memory)
        connection.close()
    return results


def missed_targets(results: list[dict]) -> list[str]:
    missed = []
    for r in results:
        where = f"{r['db']} n={r['n']:,}"
        if "ratio" in r and r["ratio"] < r["target"]:
            missed.append(f"{r['workload']} {where}: {r['ratio']}x < {r['target']}x")
        if r.get("speedup_vs_naive", TARGET_NAIVE) < TARGET_NAIVE:
            missed.append(f"naive {where}: {r['speedup_vs_naive']}x < {TARGET_NAIVE}x")
        if r.get("peak_memory_mb", 0) >= TARGET_MEMORY_MB:
            missed.append(f"memory {where}: {r['peak_memory_mb']} MB")
    return missed


def print_table(results: list[dict]) -> None:
    """The scaling table (Markdown), one line per database, workload and size."""
    rows = [r for r in results if "ratio" in r]
    if not rows:
        return
    print("\n| database | workload | n | rows | limit | limit rows/s | pipeline | "
          "pipeline rows/s | ratio (target) | limit forms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|---|---|---|")
    order = {w: i for i, w in enumerate(WORKLOADS)}
    for r in sorted(rows, key=lambda r: (r["db"], order[r["workload"]], r["n"])):
        forms = ", ".join(f"{f} {t:.2f}" for f, t in r["forms_s"].items())
        ok = "ok" if r["ratio"] >= r["target"] else "missed"
        print(
            f"| {r['db']} | {r['workload']} | {r['n']:,} | {r['rows']:,} | "
            f"{r['limit_s']:.2f} s ({r['limit_form']}) | {r['rows'] / r['limit_s']:,.0f} | "
            f"{r['pipeline_s']:.2f} s | {r['rows'] / r['pipeline_s']:,.0f} | "
            f"**{r['ratio']}x** (>= {r['target']}x, {ok}) | {forms} |"
        )
    for r in results:
        if "naive_s" in r:
            print(f"naive (map) {r['db']} n={r['n']:,}: {r['naive_s']:.1f}s extrapolated from "
                  f"{r['naive_sample']:,}, pipeline {r['speedup_vs_naive']}x faster")  # fmt: skip
        if "peak_memory_mb" in r:
            print(f"memory {r['db']}: {r['memory_rows']:,}-row CSV upsert, peak RSS "
                  f"{r['peak_memory_mb']} MB (target < {TARGET_MEMORY_MB})")  # fmt: skip


def parse_list(kind, allowed=None):
    def parse(text: str) -> list:
        items = [kind(x.replace("_", "")) if kind is int else x for x in text.split(",") if x]
        bad = [x for x in items if allowed is not None and x not in allowed]
        if bad or not items:
            raise ValueError(text)
        return items

    return parse


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument(
        "--sizes", "--n", dest="sizes", type=parse_list(int), default=list(SIZES),
        help="catalogue sizes, comma-separated (default 10000,100000,1000000; --n N: one size)",
    )  # fmt: skip
    parser.add_argument(
        "--workloads", type=parse_list(str, WORKLOADS), default=list(WORKLOADS),
        help=f"comma-separated, of {','.join(WORKLOADS)} (default: all)",
    )  # fmt: skip
    parser.add_argument(
        "--sample", type=int, default=2_000, help="products timed on the naive route (0: skip)"
    )
    parser.add_argument(
        "--memory-rows", type=int, default=1_000_000, help="CSV rows for the memory run (0: skip)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="CI smoke test: n=2000, sample=300, 20,000 memory rows, one run",
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.sample, args.memory_rows, args.repeat = [2_000], 300, 20_000, 1
    if args.child or (args.db != "both" and len(args.sizes) == 1):
        results = bench_size(args.db, args.sizes[0], args)
    else:  # one process per database and size (Django is configured once per process)
        databases = ["sqlite", "postgres"] if args.db == "both" else [args.db]
        arg_sets = [
            ["--child", "--db", db, "--sizes", str(n)]
            + ([] if i == 0 else ["--memory-rows", "0"])  # memory: once per database
            for db in databases
            for i, n in enumerate(args.sizes)
        ]
        code, results = run_children(__file__, arg_sets)
        if code and not args.check:
            raise SystemExit(code)
    if not args.child:
        print_table(results)
    missed = missed_targets(results)
    if missed:
        print("targets missed: " + "; ".join(missed), flush=True)
        if args.check:
            raise SystemExit(1)


if __name__ == "__main__":
    main()
