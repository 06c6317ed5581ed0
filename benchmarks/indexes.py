"""What each index and constraint costs the writes of the history, ledger, alert and outbox tables.

    flock /tmp/stockpipe-bench.lock .venv/bin/python benchmarks/indexes.py [--rows 200000] [--repeat 3]

PostgreSQL (the production database). On a freshly migrated database with 10,000 products,
each table gets one set-based ``INSERT ... SELECT`` of ``--rows`` rows shaped like the
project's own (a bulk pipeline writes these rows the same way). Every measurement runs in a
transaction that is rolled back: first with every index and constraint (the baseline), then
once without each index or constraint in turn, the two alternating (``DROP`` is transactional
in PostgreSQL), with
``SET CONSTRAINTS ALL IMMEDIATE`` so deferred foreign keys are checked inside the timed
statement rather than at a commit that never comes. The best of ``--repeat`` runs counts. The
saving of dropping one object is its write cost; ``NEEDED_BY`` says which query needs it
(README: keep only what a query needs), and the table printed is the one in
``benchmarks/RESULTS-pipeline.md``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_parser, fresh_database_url, setup_django

TABLES = ("app_pricehistory", "app_stockmovement", "app_stockalert", "app_webhookdelivery")

# Rows shaped like the project's: {n} is generate_series(1, rows), {p} a product id.
INSERTS = {
    "app_pricehistory": """
        INSERT INTO app_pricehistory
            (source, sku, name, old_price, new_price, changed_at, changed_by_id, product_id)
        SELECT 'pipeline:1', p.sku, p.name, 10 + n %% 50, 11 + n %% 50,
               now() - make_interval(secs => n), NULL, p.id
        FROM generate_series(1, %(rows)s) AS n
        JOIN app_product p ON p.id = %(first)s + n %% %(products)s""",
    "app_stockmovement": """
        INSERT INTO app_stockmovement (source, sku, delta, stock_after, reason, idempotency_key,
            created_at, changed_by_id, product_id, location_id)
        SELECT 'pipeline:1', p.sku, 1 + n %% 5, 100 + n %% 7, '',
               CASE WHEN n %% 10 = 0 THEN 'key-' || n END,
               now() - make_interval(secs => n), NULL, p.id, %(location)s
        FROM generate_series(1, %(rows)s) AS n
        JOIN app_product p ON p.id = %(first)s + n %% %(products)s""",
    # Resolved episodes (one open episode per product at most: the partial unique indexes).
    "app_stockalert": """
        INSERT INTO app_stockalert (sku, name, stock, threshold, opened_at, resolved_at,
            delivery_status, attempts, last_error, next_attempt_at, sent_at, product_id,
            location_id)
        SELECT p.sku, p.name, 2, 5, now() - make_interval(secs => n + 60),
               now() - make_interval(secs => n), 'sent', 1, '', NULL, now(), p.id, NULL
        FROM generate_series(1, %(rows)s) AS n
        JOIN app_product p ON p.id = %(first)s + n %% %(products)s""",
    "app_webhookdelivery": """
        INSERT INTO app_webhookdelivery (event_id, event_type, stream, data, created_at, status,
            attempts, next_attempt_at, last_status_code, last_error, delivered_at,
            subscription_id)
        SELECT gen_random_uuid(), 'product.updated', 'product:' || p.id,
               jsonb_build_object('product', jsonb_build_object('id', p.id, 'sku', p.sku)),
               now(), 'pending', 0, NULL, NULL, '', NULL, %(subscription)s
        FROM generate_series(1, %(rows)s) AS n
        JOIN app_product p ON p.id = %(first)s + n %% %(products)s""",
}

# Which query needs each object (keep it) or what covers it (dropped in migration 0011).
NEEDED_BY = {
    "app_pricehistory_pkey": "primary key",
    "app_pricehistory_changed_at": "retention (older than N days), exports' date range",
    "app_pricehistory_changed_by_id": "deleting a user (SET NULL) without a scan",
    "app_pricehistory_product_id": "covered by pricehistory_product_time (dropped, 0011)",
    "app_pricehistory_sku": "the API's ?sku= filter and exports' SKU prefix",
    "pricehistory_product_time": "a product's history pages, price-at, Omnibus prior price",
    "app_stockmovement_pkey": "primary key",
    "app_stockmovement_changed_by_id": "deleting a user (SET NULL) without a scan",
    "app_stockmovement_created_at": "retention, exports' date range",
    "app_stockmovement_idempotency_key": "idempotent stock moves (unique)",
    "app_stockmovement_location_id": "deleting/deactivating a location, per-location ledger",
    "app_stockmovement_product_id": "covered by stockmovement_product_time (dropped, 0011)",
    "app_stockmovement_sku": "the API's ?sku= filter and exports' SKU prefix",
    "stockmovement_product_time": "a product's ledger pages (deep ones too), retention's folding",
    "app_stockalert_pkey": "primary key",
    "app_stockalert_location_id": "per-location episodes, deleting a location",
    "app_stockalert_opened_at": "alert lists newest first, exports' date range",
    "app_stockalert_product_id": "a product's alerts (the open-episode indexes are partial)",
    "app_stockalert_sku": "the API's ?sku= filter and exports' SKU prefix",
    "one_open_stock_alert_per_location": "one open episode per (product, location) (unique)",
    "one_open_stock_alert_per_product": "one open episode per product (unique)",
    "stockalert_delivery_queue": "the alert sender's claim of due alerts",
    "app_webhookdelivery_pkey": "primary key",
    "app_webhookdelivery_created_at": "retention and the deliveries list",
    "app_webhookdelivery_event_id": "deliveries of one event (API filter)",
    "app_webhookdelivery_subscription_id": "covered by webhook_stream (dropped, 0011)",
    "webhook_delivery_queue": "the sweeper's claim of due deliveries",
    "webhook_stream": "per-(subscription, stream) ordering of deliveries",
}


def need(kind: str, name: str) -> str:
    if kind == "foreign key":
        return "integrity: the row it names exists"
    if kind == "check":
        return "integrity: the value's rule"
    for prefix, why in sorted(NEEDED_BY.items(), key=lambda kv: -len(kv[0])):
        if name.startswith(prefix):
            return why
    return "?"


def objects(cursor, table: str) -> list[tuple[str, str, str]]:
    """(kind, name, definition) of every index (but the primary key's) and constraint."""
    cursor.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass) ORDER BY 1",
        [table, table],
    )
    found = [("index", name, definition) for name, definition in cursor.fetchall()]
    cursor.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
        "WHERE conrelid = %s::regclass AND contype <> 'p' ORDER BY 1",
        [table],
    )
    kinds = {"f": "foreign key", "c": "check", "u": "unique"}
    found += [(kinds.get(t, t), name, definition) for name, t, definition in cursor.fetchall()]
    return found


def timed_insert(connection, table: str, params: dict, drop: str | None) -> float:
    with connection.cursor() as cursor:
        cursor.execute("BEGIN")
        try:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
            if drop:
                cursor.execute(drop)
            start = time.perf_counter()
            cursor.execute(INSERTS[table], params)
            return time.perf_counter() - start
        finally:
            cursor.execute("ROLLBACK")


def seed_products(products: int) -> tuple[int, Any]:
    """``products`` products, set-based, and the location the ledger rows name: (the first
    product's id, the location)."""
    from django.db import connection

    from app.models import Location

    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO app_product (sku, name, price, stock, low_stock_threshold, created_at,"
            " updated_at) SELECT 'IDX-' || lpad(n::text, 6, '0'), 'Product ' || n, 10, 100, 5,"
            " now(), now() FROM generate_series(1, %s) AS n",
            [products],
        )
        cursor.execute("SELECT min(id) FROM app_product")
        first = cursor.fetchone()[0]
    location = Location.objects.get_or_create(code="MAIN", defaults={"name": "Main"})[0]
    return first, location


def main() -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--products", type=int, default=10_000)
    args = parser.parse_args()
    if args.db == "sqlite":
        raise SystemExit("indexes.py measures PostgreSQL, the production database")
    url = fresh_database_url("postgres", Path(tempfile.mkdtemp()), "stockpipe_bench_indexes")
    setup_django(url)
    from django.db import connection

    from app.models import WebhookSubscription

    first, location = seed_products(args.products)
    subscription = WebhookSubscription.objects.create(
        url="https://hooks.example.com/in", events=["product.updated"], secret="whsec_" + "A" * 44
    )
    connection.ensure_connection()
    connection.connection.autocommit = True  # BEGIN/ROLLBACK by hand
    params = {
        "rows": args.rows,
        "products": args.products,
        "first": first,
        "location": location.pk,
        "subscription": subscription.pk,
    }
    print(f"{args.rows:,} rows per INSERT, best of {args.repeat}, PostgreSQL, rolled back\n")
    print(
        "| table | index or constraint | kind | insert with all | without it | write cost "
        "| share | needed by |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for table in TABLES:
        with connection.cursor() as cursor:
            found = objects(cursor, table)

        def pair(drop: str, table: str = table) -> tuple[float, float]:
            """Best times with and without the object, measured alternately so that a
            change of the machine's load hits both sides alike."""
            with_it, without = [], []
            for _ in range(args.repeat):
                with_it.append(timed_insert(connection, table, params, None))
                without.append(timed_insert(connection, table, params, drop))
            return min(with_it), min(without)

        for kind, name, _definition in found:
            if kind == "index":
                drop = f'DROP INDEX "{name}"'
            else:
                drop = f'ALTER TABLE {table} DROP CONSTRAINT "{name}"'
            with connection.cursor() as cursor:  # the rolled-back rows of the last pair
                cursor.execute(f"VACUUM {table}")
            baseline, without = pair(drop)
            cost = baseline - without
            print(
                f"| {table} | `{name}` | {kind} | {baseline * 1000:,.0f} ms | "
                f"{without * 1000:,.0f} ms | {cost * 1000:+,.0f} ms | {cost / baseline:+.0%} | "
                f"{need(kind, name)} |",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
