"""The API's history and ledger pages (``app.selectors.history``: ``only`` and
``prefetch_related``) show what the joined read they replaced showed, row for row, on random
histories: users deleted and none, two locations, rows under an earlier SKU, ties on time,
another product's rows and a deleted product's under the same SKU, every page size and pages
past the end. The replaced read is kept here as it was (``paginate_late_rows`` and the
``select_related`` querysets of commit 254c0a5), served through the same views."""

from __future__ import annotations

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connections
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app.api import history as history_api
from app.api import stock as stock_api
from app.models import Location, PriceHistory, Product, StockMovement
from tests.factories import ProductFactory, UserFactory


def paginate_late_rows(queryset, page: int, page_size: int) -> dict:
    """254c0a5's ``app.api.schemas.paginate_late_rows``, verbatim."""
    count = queryset.count()
    start = (page - 1) * page_size
    if start >= count:
        return {"count": count, "page": page, "page_size": page_size, "items": []}
    keys = list(queryset.values_list("pk", flat=True)[start : start + page_size])
    rows = {row.pk: row for row in queryset.filter(pk__in=keys)}
    items = [rows[key] for key in keys if key in rows]
    return {"count": count, "page": page, "page_size": page_size, "items": items}


def old_price_changes(product_id: int):
    return (
        PriceHistory.objects.filter(product_id=product_id)
        .select_related("changed_by")
        .order_by("-changed_at", "-id")
    )


def old_stock_movements(product_id: int):
    return (
        StockMovement.objects.filter(product_id=product_id)
        .select_related("changed_by", "location")
        .order_by("-created_at", "-id")
    )


def fill(rng: random.Random, sku: str) -> int:
    """A random history for the product ``sku`` (and noise around it); returns its row count."""
    users = [UserFactory(username=f"user-{n}") for n in range(4)]
    places = [
        Location.objects.get_or_create(code=code, defaults={"name": code})[0]
        for code in ("MAIN", "NORTH", "SOUTH")
    ]
    gone = ProductFactory(sku=sku, stock=0)  # deleted below: its rows keep the SKU, not the link
    product_rows = rng.randint(0, 90)
    other = ProductFactory(sku=f"{sku}-OTHER", stock=0)
    start = timezone.now().replace(microsecond=0) - timedelta(days=30)
    rows: dict[str, list] = {"changes": [], "moves": []}

    def add(owner, at) -> None:
        user = rng.choice([*users, None, None])
        row_sku = owner.sku if rng.random() < 0.7 else f"OLD-{rng.randint(1, 9)}"
        rows["changes"].append(
            PriceHistory(
                product=owner,
                sku=row_sku,
                name=owner.name,
                old_price=Decimal(rng.randint(0, 99_999)) / 100,
                new_price=Decimal(rng.randint(0, 99_999)) / 100,
                changed_at=at,
                changed_by=user,
                source=rng.choice(["api", "admin", "pipeline:x", "shell"]),
            )
        )
        rows["moves"].append(
            StockMovement(
                product=owner,
                sku=row_sku,
                location=rng.choice(places),
                delta=rng.randint(-50, 50),
                stock_after=rng.randint(0, 1000),
                reason=rng.choice(["", "count", "ünïcødé ✓"]),
                idempotency_key=None
                if rng.random() < 0.5
                else f"k-{len(rows['moves'])}-{rng.random()}",
                created_at=at,
                changed_by=user,
                source=rng.choice(["api", "admin", "pipeline:x", "shell"]),
            )
        )

    for n in range(rng.randint(0, 20)):
        add(gone, start + timedelta(minutes=n))
    PriceHistory.objects.bulk_create(rows["changes"])
    StockMovement.objects.bulk_create(rows["moves"])
    gone.delete()
    product = ProductFactory(sku=sku, stock=0)
    rows = {"changes": [], "moves": []}
    for _ in range(product_rows):
        # few distinct times: many ties, broken by the id
        at = start + timedelta(minutes=rng.randint(0, 8), microseconds=rng.choice([0, 0, 123456]))
        add(product, at)
        if rng.random() < 0.5:
            add(other, at)
    rng.shuffle(rows["changes"])
    rng.shuffle(rows["moves"])
    PriceHistory.objects.bulk_create(rows["changes"])
    StockMovement.objects.bulk_create(rows["moves"])
    for user in rng.sample(users, 2):
        user.delete()  # SET NULL on its rows
    return product_rows


def both(client, url: str, params: dict, monkeypatch, module, selector: str, old) -> tuple:
    new = client.get(url, params)
    with monkeypatch.context() as patch:
        patch.setattr(module, selector, old)
        patch.setattr(module, "paginate", paginate_late_rows)
        before = client.get(url, params)
    assert new.status_code == before.status_code == 200, (new.content, before.content)
    return new.json(), before.json()


ENDPOINTS = {
    "price-history": (history_api, "price_changes", old_price_changes),
    "stock-movements": (stock_api, "stock_movements", old_stock_movements),
}


def compare(client, monkeypatch, rng, endpoint: str, sku: str, rows: int) -> None:
    module, selector, old = ENDPOINTS[endpoint]
    url = f"/api/products/{sku}/{endpoint}"
    sizes = {1, 2, 3, 7, 50, 200, rng.randint(1, 200), max(rows, 1)}
    for size in sorted(sizes):
        last = -(-rows // size)
        for page in sorted({1, 2, max(last, 1), last + 1, last + 2, 1_000_000}):
            new, before = both(
                client, url, {"page": page, "page_size": size}, monkeypatch, module, selector, old
            )
            assert new == before, (page, size)
            assert new["count"] == rows


@pytest.mark.django_db
@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("endpoint", ["price-history", "stock-movements"])
def test_pages_match_the_joined_read_they_replaced(reader_api, monkeypatch, seed, endpoint):
    rng = random.Random(seed)
    rows = fill(rng, f"DIFF-{seed}")
    reader_api.get(f"/api/products/DIFF-{seed}/{endpoint}")  # the token's first use writes
    compare(reader_api, monkeypatch, rng, endpoint, f"DIFF-{seed}", rows)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("endpoint", ["price-history", "stock-movements"])
def test_pages_read_their_users_and_locations_where_they_read_their_rows(
    reader_api, monkeypatch, endpoint
):
    """Outside a transaction the page's reads go to the replica alias (in tests a mirror of
    the database): the prefetched users and locations are read there too, not from the
    primary, and the pages match the joined read's."""
    rng = random.Random(99)
    rows = fill(rng, "DIFF-R")
    assert rows and Product.objects.filter(sku="DIFF-R").exists()
    url = f"/api/products/DIFF-R/{endpoint}"
    reader_api.get(url)
    with (
        CaptureQueriesContext(connections["default"]) as primary,
        CaptureQueriesContext(connections["replica"]) as replica,
    ):
        assert reader_api.get(url, {"page_size": 200}).status_code == 200
    on_replica = " ".join(q["sql"] for q in replica.captured_queries)
    on_primary = " ".join(q["sql"] for q in primary.captured_queries)
    assert '"auth_user"' in on_replica
    assert "app_stockmovement" in on_replica or "app_pricehistory" in on_replica
    for table in ("app_pricehistory", "app_stockmovement", "app_location"):
        assert table not in on_primary, on_primary
    compare(reader_api, monkeypatch, rng, endpoint, "DIFF-R", rows)
