"""A tracked ``save()`` with a price change against its natural anchor (issue 13).

The anchor is plain Django doing the same job by hand: a twin model with the same schema and
no receivers (``tests.conformance.plainapp.PlainProduct``), ``save()`` plus
``PriceHistory.objects.create()`` in one atomic block. stockpipe's route is
``product.price = x; product.save()`` with every effect registered (history, ledger, alerts,
webhook outbox, cache invalidation). Both save ``--n`` loaded instances once each, alternating
``--repeat`` times; the best time of each counts. Before timing, the statements of one save of
each route are captured: stockpipe's must be one UPDATE and one INSERT. After each round both
routes must have written the same prices and as many history rows.

    .venv/bin/python benchmarks/save.py --db both          # n=2,000, target: ratio >= 1.0
    .venv/bin/python benchmarks/save.py --quick --check    # CI smoke
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks.common import fresh_database_url, run_per_database, setup_django

TARGET = 1.0  # plain time / stockpipe time: stockpipe no slower than the anchor


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="n=200, 2 rounds")
    parser.add_argument("--check", action="store_true", help="exit 1 if the target is missed")
    args = parser.parse_args()
    if args.db == "both":
        return run_per_database(__file__)
    if args.quick:
        args.n, args.repeat = 200, 2
    with tempfile.TemporaryDirectory() as workdir:
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "benchmarks.save_settings")
        setup_django(fresh_database_url(args.db, Path(workdir), "stockpipe_bench_save"))
        return run(args)


def run(args) -> int:
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from app.models import PriceHistory, Product
    from tests.conformance.plainapp.models import PlainProduct

    n = args.n
    rows = [
        {"sku": f"S-{i:06d}", "name": f"Save {i}", "price": Decimal("100.00"), "stock": 50}
        for i in range(n)
    ]
    Product.objects.bulk_create([Product(**row) for row in rows], batch_size=1000)
    PlainProduct.objects.bulk_create([PlainProduct(**row) for row in rows], batch_size=1000)
    ids = dict(Product.objects.values_list("sku", "pk"))

    def ours(instances, price):
        for product in instances:
            product.price = price
            product.save()

    def plain(instances, price):
        for product in instances:
            with transaction.atomic():
                old = product.price
                product.price = price
                product.save()
                PriceHistory.objects.create(
                    product_id=ids[product.sku],
                    sku=product.sku,
                    name=product.name,
                    old_price=old,
                    new_price=price,
                    changed_at=timezone.now(),
                )

    def statements(route, model, price):
        instance = [model.objects.get(sku="S-000000")]
        with CaptureQueriesContext(connection) as captured:
            route(instance, price)
        return [
            q["sql"].split()[0]
            for q in captured.captured_queries
            if "SAVEPOINT" not in q["sql"].upper()
            and q["sql"].split()[0] in ("UPDATE", "INSERT", "SELECT", "DELETE")
        ]

    ours_statements = statements(ours, Product, Decimal("1.00"))
    plain_statements = statements(plain, PlainProduct, Decimal("1.00"))
    print(
        f"{connection.vendor}: statements of one save: stockpipe {ours_statements}, "
        f"anchor {plain_statements}"
    )
    ok = ours_statements == ["UPDATE", "INSERT"]

    best = {"stockpipe": float("inf"), "anchor": float("inf")}
    for round_ in range(args.repeat):
        price = Decimal(200 + round_)
        for name, route, model in (("stockpipe", ours, Product), ("anchor", plain, PlainProduct)):
            instances = list(model.objects.order_by("pk"))  # loaded, as a view or form would
            history_before = PriceHistory.objects.count()
            start = time.perf_counter()
            route(instances, price)
            best[name] = min(best[name], time.perf_counter() - start)
            written = PriceHistory.objects.count() - history_before
            changed = model.objects.filter(price=price).count()
            if (written, changed) != (n, n):
                print(f"{name}: wrote {written} history rows and {changed} prices, not {n}")
                ok = False
    ratio = best["anchor"] / best["stockpipe"]
    print(
        f"{connection.vendor}: n={n} stockpipe {best['stockpipe']:.3f} s "
        f"({n / best['stockpipe']:,.0f} saves/s), anchor {best['anchor']:.3f} s "
        f"({n / best['anchor']:,.0f} saves/s): ratio {ratio:.2f}x (target >= {TARGET})"
    )
    print(
        "RESULT "
        + json.dumps(
            {
                "db": connection.vendor,
                "n": n,
                "ratio": round(ratio, 3),
                **{k: round(v, 4) for k, v in best.items()},
            }
        )
    )
    if args.check and (not ok or ratio < TARGET):
        return 1
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
