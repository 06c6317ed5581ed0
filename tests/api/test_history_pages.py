"""A product's price history and ledger pages, deep ones too: what each row shows, in order,
at a fixed number of queries, and (PostgreSQL) read from the history index alone: no table
page per row (issue 13; ``app.selectors.history``, migration 0016)."""

from __future__ import annotations

import contextlib
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection, connections, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app.models import Location, PriceHistory, StockMovement
from tests.factories import ProductFactory, UserFactory

ROWS = 130  # three pages of 50: the last is a deep one (an OFFSET of 100)


def fill(product, others: int = 1) -> None:
    """ROWS price changes and ledger rows of ``product``, interleaved with as many of each of
    ``others`` other products (so its rows do not sit together in the table), at two
    locations, by two users and nobody, with and without idempotency keys, and with ties on
    time."""
    other_products = [ProductFactory(sku=f"OTHER-{k}") for k in range(1, others + 1)]
    users = [UserFactory(username="ann"), UserFactory(username="bob"), None]
    places = [
        Location.objects.get_or_create(code="MAIN", defaults={"name": "Main"})[0],
        Location.objects.get_or_create(code="NORTH", defaults={"name": "North"})[0],
    ]
    start = timezone.now().replace(microsecond=0) - timedelta(days=400)
    changes, moves = [], []
    for n in range(ROWS):
        at = start + timedelta(hours=n // 2)  # pairs share their time: the id breaks the tie
        for owner in (product, *other_products):
            changes.append(
                PriceHistory(
                    product=owner,
                    sku=owner.sku if n % 7 else f"OLD-{n}",  # a row keeps the SKU it was made under
                    name=owner.name,
                    old_price=Decimal(n),
                    new_price=Decimal(n + 1),
                    changed_at=at,
                    changed_by=users[n % 3],
                    source=f"src-{n % 4}",
                )
            )
            moves.append(
                StockMovement(
                    product=owner,
                    sku=owner.sku if n % 5 else f"OLD-{n}",
                    location=places[n % 2],
                    delta=n + 1,
                    stock_after=n * 3,
                    reason=f"reason {n}" if n % 3 else "",
                    idempotency_key=f"{owner.sku}-key-{n}" if n % 2 else None,
                    created_at=at,
                    changed_by=users[(n + 1) % 3],
                    source=f"src-{n % 4}",
                )
            )
    PriceHistory.objects.bulk_create(changes)
    StockMovement.objects.bulk_create(moves)


def expected_changes(product) -> list[dict]:
    rows = PriceHistory.objects.filter(product=product).select_related("changed_by")
    return [
        {
            "id": r.pk,
            "sku": r.sku,
            "old_price": f"{r.old_price:.2f}",
            "new_price": f"{r.new_price:.2f}",
            "changed_at": r.changed_at,
            "changed_by": r.changed_by.username if r.changed_by else None,
            "source": r.source,
        }
        for r in rows.order_by("-changed_at", "-id")
    ]


def expected_moves(product) -> list[dict]:
    rows = StockMovement.objects.filter(product=product).select_related("changed_by", "location")
    return [
        {
            "id": r.pk,
            "sku": r.sku,
            "location": r.location.code,
            "delta": r.delta,
            "stock_after": r.stock_after,
            "reason": r.reason,
            "idempotency_key": r.idempotency_key,
            "created_at": r.created_at,
            "changed_by": r.changed_by.username if r.changed_by else None,
            "source": r.source,
        }
        for r in rows.order_by("-created_at", "-id")
    ]


def items(body: dict) -> list[dict]:
    from django.utils.dateparse import parse_datetime

    for field in ("changed_at", "created_at"):
        for item in body["items"]:
            if field in item:
                item[field] = parse_datetime(item[field])
    return body["items"]


# Besides the token's: the product, the count, the page, and the users (and locations) its
# rows name: none per row.
PAGE_QUERIES = {"price-history": 4, "stock-movements": 5}


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ["price-history", "stock-movements"])
def test_every_page_shows_the_rows_in_order_at_a_fixed_number_of_queries(reader_api, endpoint):
    product = ProductFactory(sku="DEEP-1", stock=0)
    fill(product)
    expected = (expected_changes if endpoint == "price-history" else expected_moves)(product)
    assert len(expected) == ROWS
    url = f"/api/products/DEEP-1/{endpoint}"
    reader_api.get(url)  # the token's first use writes its last_used_at
    shown = []
    for page in (1, 2, 3):
        with CaptureQueriesContext(connection) as captured:
            body = reader_api.get(url, {"page": page}).json()
        assert (body["count"], body["page"], body["page_size"]) == (ROWS, page, 50)
        shown += items(body)
        selects = [q for q in captured.captured_queries if "app_apitoken" not in q["sql"]]
        assert len(selects) == PAGE_QUERIES[endpoint], [q["sql"] for q in selects]
    assert shown == expected
    assert reader_api.get(url, {"page": 4}).json()["items"] == []


def plans_of(url: str, client, *, index_only: bool = False) -> list[str]:
    """EXPLAIN (ANALYZE) of every statement of the request that reads a history table (its
    reads may go to the "replica" alias: in transactional tests a mirror of this database).
    With ``index_only`` sequential and bitmap scans are off, set for the EXPLAINs' own
    transaction (``SET LOCAL``): through PgBouncer's transaction pooling a session ``SET``
    may land on another server connection than the one that plans."""
    with contextlib.ExitStack() as stack:
        captured = [
            stack.enter_context(CaptureQueriesContext(connections[alias])) for alias in connections
        ]
        assert client.get(url).status_code == 200
    plans = []
    with transaction.atomic(), connection.cursor() as cursor:
        if index_only:
            cursor.execute("SET LOCAL enable_seqscan = off")
            cursor.execute("SET LOCAL enable_bitmapscan = off")
        for query in (query for each in captured for query in each.captured_queries):
            if "app_pricehistory" not in query["sql"] and "app_stockmovement" not in query["sql"]:
                continue
            cursor.execute("EXPLAIN (ANALYZE, COSTS OFF) " + query["sql"])
            plans.append("\n".join(row[0] for row in cursor.fetchall()))
    return plans


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["price-history", "stock-movements"])
def test_a_deep_page_reads_the_history_index_alone(reader_api, endpoint):
    """Its count, offset and rows come from the index: an index-only scan with no heap
    fetch once the table is vacuumed (before migration 0016 the page's rows were fetched by
    id: an index scan of the primary key and a table page per row). Twenty other products'
    rows make the product's a small share of the table, as they are in a shop (with half of
    a tiny table, a scan of the time index is as cheap and the planner's choice arbitrary);
    table scans are switched off: what is left is whether the index can answer alone."""
    product = ProductFactory(sku="DEEP-1", stock=0)
    fill(product, others=20)
    with connection.cursor() as cursor:
        cursor.execute("VACUUM ANALYZE app_pricehistory")
        cursor.execute("VACUUM ANALYZE app_stockmovement")
    plans = plans_of(f"/api/products/DEEP-1/{endpoint}?page=3", reader_api, index_only=True)
    for plan in plans:
        assert "Index Only Scan" in plan, plan
        assert "Index Scan" not in plan.replace("Index Only Scan", ""), plan
        assert "Seq Scan" not in plan, plan
        fetches = [line for line in plan.splitlines() if "Heap Fetches" in line]
        assert fetches and all(line.strip() == "Heap Fetches: 0" for line in fetches), plan
    assert len(plans) == 2  # the count and the page


@pytest.mark.django_db
@pytest.mark.parametrize("endpoint", ["price-history", "stock-movements"])
def test_a_user_deleted_between_the_rows_and_the_users_shows_as_nobody(reader_api, endpoint):
    """A page reads its users after its rows: a user deleted in between (which sets the
    rows' ``changed_by`` to null) is shown as nobody, as a read a moment later would."""
    product = ProductFactory(sku="DEEP-1", stock=0)
    fill(product)
    ann = UserFactory._meta.model.objects.get(username="ann")
    url = f"/api/products/DEEP-1/{endpoint}"
    reader_api.get(url)  # the token's first use writes its last_used_at
    read_rows, deleted = [], []

    def delete_ann_before_the_users(execute, sql, params, many, context):
        if 'FROM "app_pricehistory"' in sql or 'FROM "app_stockmovement"' in sql:
            read_rows.append(sql)
        elif read_rows and 'FROM "auth_user"' in sql and not deleted:
            deleted.append(ann.pk)
            ann.delete()  # on this connection, in the test's transaction
        return execute(sql, params, many, context)

    with connection.execute_wrapper(delete_ann_before_the_users):
        response = reader_api.get(url, {"page": 1})
    assert response.status_code == 200, response.content
    assert deleted and ann.pk is None  # deleted midway
    shown = {item["changed_by"] for item in response.json()["items"]}
    assert shown == {"bob", None}
