"""Webhook outbox benchmark: what subscriptions cost a big pipeline, measured in one run.

    python benchmarks/webhooks.py [--db sqlite|postgres|both] [--n 100000] [--repeat 3]

For each database (a temp SQLite file / PostgreSQL ``stockpipe_bench_webhooks``) it loads
``n`` products and times the same pipeline (set every price, then adjust every stock) in
three configurations (interleaved, best of ``--repeat``), restoring the products before each:

* baseline: no webhook subscription (the outbox receivers run but find no subscriber),
* muted:    the webhook receivers disconnected (what "no webhooks at all" costs),
* outbox:   one subscription to every event type (one outbox row per event, ~2 per product
            and step), showing the tasks enqueued after commit: a handful, never one per
            product. No HTTP happens inside the pipeline.

Prints the ratios baseline/muted (target <= 1.05: no subscription costs ~nothing) and
outbox/baseline (target <= 3.0), and the task count (target <= n / 1000 + a few).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from decimal import Decimal
from pathlib import Path

from common import fresh_database_url, run_per_database, setup_django

ROOT = Path(__file__).resolve().parent.parent
PG_NAME = os.environ.get("BENCH_WEBHOOKS_PG_DB", "stockpipe_bench_webhooks")

TARGET_NO_SUBSCRIPTION = 1.05
TARGET_OUTBOX = 3.0


def database_url(db: str, workdir: Path) -> str:
    return fresh_database_url(db, workdir, PG_NAME)


def run(db: str, n: int, repeat: int) -> dict:
    from django.db import connection, transaction
    from django_tasks_db.models import DBTaskResult

    from app.models import (
        PriceHistory,
        Product,
        StockAlert,
        StockMovement,
        WebhookDelivery,
        WebhookEvent,
    )
    from app.pipelines.service import process_pipeline
    from app.signals import alerts_opened, alerts_resolved, muted
    from app.tracking import effects
    from app.webhooks import outbox, receivers, services

    print(f"[{db}] loading {n} products...", flush=True)
    with transaction.atomic():
        Product.objects.bulk_create(
            Product(sku=f"SKU-{i:07d}", name=f"P{i}", price=Decimal("10.00"), stock=50)
            for i in range(n)
        )
    spec = {
        "steps": [
            {"op": "adjust_prices", "select": {"all": True}, "percent": "5"},
            {"op": "adjust_stock", "deltas": {f"SKU-{i:07d}": -1 for i in range(n)}},
        ]
    }

    def reset() -> None:
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {Product._meta.db_table} SET price = 10.00, stock = 50"
            )  # raw: the restore is not part of the workload
        for model in (PriceHistory, StockMovement, StockAlert, WebhookDelivery, DBTaskResult):
            model._base_manager.all()._raw_delete(model._base_manager.db)
        # The previous run's deleted rows and WAL must not bill this one.
        with connection.cursor() as cursor:
            if connection.vendor == "sqlite":
                cursor.execute("VACUUM")
                cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            else:
                cursor.execute("VACUUM ANALYZE")
                cursor.execute("CHECKPOINT")
        outbox.forget_subscriptions()

    def timed() -> float:
        reset()
        start = time.perf_counter()
        result = process_pipeline(spec)
        elapsed = time.perf_counter() - start
        assert result["status"] == "succeeded", result
        return elapsed

    connections = [
        (alerts_opened, receivers.alerts_opened, StockAlert, "webhooks.alerts_opened"),
        (alerts_resolved, receivers.alerts_resolved, StockAlert, "webhooks.alerts_resolved"),
    ]
    times: dict[str, list[float]] = {"muted": [], "baseline": [], "outbox": []}
    rows = tasks = 0

    def measure(config: str) -> None:
        nonlocal rows, tasks
        if config == "baseline":
            times[config].append(timed())
        elif config == "muted":
            with ExitStack() as stack:
                stack.enter_context(effects.muted("webhooks"))  # product events
                for signal, receiver, sender, uid in connections:
                    stack.enter_context(muted(signal, receiver, sender=sender, dispatch_uid=uid))
                times[config].append(timed())
        else:
            subscription = services.create_subscription(
                url="http://127.0.0.1:9/none", events=WebhookEvent.values
            )
            times[config].append(timed())
            rows = WebhookDelivery.objects.count()
            tasks = DBTaskResult.objects.filter(task_path="app.tasks.deliver_webhooks").count()
            WebhookDelivery._base_manager.all()._raw_delete(WebhookDelivery._base_manager.db)
            subscription.delete()

    order = ["baseline", "muted", "outbox"]
    for i in range(repeat):  # rotated order, best of each: machine load is noise, not cost
        for config in order[i % 3 :] + order[: i % 3]:
            measure(config)
    without, baseline, with_outbox = (min(times[k]) for k in ("muted", "baseline", "outbox"))
    return {
        "db": db,
        "n": n,
        "muted_s": without,
        "baseline_s": baseline,
        "outbox_s": with_outbox,
        "outbox_rows": rows,
        "tasks": tasks,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="sqlite")
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if args.db == "both":
        return run_per_database(__file__)
    with tempfile.TemporaryDirectory() as workdir:
        setup_django(database_url(args.db, Path(workdir)))
        r = run(args.db, args.n, args.repeat)
    idle = r["baseline_s"] / r["muted_s"]
    cost = r["outbox_s"] / r["baseline_s"]
    task_limit = args.n // 1000 + 5
    print(
        f"[{r['db']}] n={r['n']}: webhooks muted {r['muted_s']:.2f}s, no subscription "
        f"{r['baseline_s']:.2f}s, subscribed to everything {r['outbox_s']:.2f}s "
        f"({r['outbox_rows']} outbox rows, {r['tasks']} delivery task(s) enqueued)"
    )
    ok_idle = idle <= TARGET_NO_SUBSCRIPTION
    ok_cost = cost <= TARGET_OUTBOX
    ok_tasks = r["tasks"] <= task_limit
    print(
        f"  no subscription / muted = {idle:.3f} (target <= {TARGET_NO_SUBSCRIPTION}) {'OK' if ok_idle else 'MISSED'}"
    )
    print(
        f"  outbox / no subscription = {cost:.3f} (target <= {TARGET_OUTBOX}) {'OK' if ok_cost else 'MISSED'}"
    )
    print(
        f"  delivery tasks = {r['tasks']} (target <= {task_limit}) {'OK' if ok_tasks else 'MISSED'}"
    )
    return 0 if ok_idle and ok_cost and ok_tasks else 1


if __name__ == "__main__":
    sys.exit(main())
