"""Finding 11 (b) of issue 12: price history and the stock ledger belong to the product.

A SKU deleted and created again is a new product: the API's history, price-at and ledger
and the product page show only its own rows. The deleted product's rows keep their SKU
and stay in the database (admin), next to its snapshot in the deletion audit.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from app.models import DeletionAudit, PriceHistory, Product, StockMovement
from app.services.stock import adjust_stock
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def reborn(db):
    """SKU R-1: an old product (price 10 -> 20, stock -3) deleted, then a new one at 7.00."""
    old = ProductFactory(sku="R-1", price=Decimal("10.00"), stock=10)
    old.price = Decimal("20.00")
    old.save()
    adjust_stock("R-1", -3, user=None, reason="old sale")
    old.delete()
    return ProductFactory(sku="R-1", price=Decimal("7.00"), stock=5)


def test_api_history_and_ledger_show_only_the_new_product(reader_api, reborn):
    history = reader_api.get("/api/products/R-1/price-history").json()
    assert history["count"] == 0 and history["items"] == []
    ledger = reader_api.get("/api/products/R-1/stock-movements").json()
    assert [m["reason"] for m in ledger["items"]] == [
        m.reason for m in StockMovement.objects.filter(product=reborn)
    ]
    assert "old sale" not in {m["reason"] for m in ledger["items"]}


def test_price_at_before_the_new_product_existed_is_404(reader_api, reborn):
    before = (reborn.created_at - timedelta(seconds=1)).isoformat()
    assert reader_api.get("/api/products/R-1/price-at", {"at": before}).status_code == 404
    now = timezone.now().isoformat()
    assert reader_api.get("/api/products/R-1/price-at", {"at": now}).json()["price"] == "7.00"


def test_new_products_own_changes_are_its_history(reader_api, reborn):
    reborn.price = Decimal("8.00")
    reborn.save()
    items = reader_api.get("/api/products/R-1/price-history").json()["items"]
    assert [(i["old_price"], i["new_price"]) for i in items] == [("7.00", "8.00")]


def test_deleted_products_history_keeps_its_sku_and_snapshot(reborn):
    orphaned = PriceHistory.objects.filter(sku="R-1", product__isnull=True)
    assert [(h.old_price, h.new_price) for h in orphaned] == [(Decimal("10.00"), Decimal("20.00"))]
    audit = DeletionAudit.objects.get(model_label="app.Product", snapshot__sku="R-1")
    assert audit.snapshot["price"] == "20.00"


def test_deleted_sku_is_404(reader_api):
    ProductFactory(sku="X-1").delete()
    for path in ("price-history", "stock-movements"):
        assert reader_api.get(f"/api/products/X-1/{path}").status_code == 404
    now = timezone.now().isoformat()
    assert reader_api.get("/api/products/X-1/price-at", {"at": now}).status_code == 404


def test_product_page_shows_only_the_new_products_history(reborn):
    client = Client()
    client.force_login(UserFactory())
    page = client.get("/products/R-1/").content.decode()
    assert "7.00" in page
    assert "20.00" not in page and "old sale" not in page
    assert Product.objects.get(sku="R-1").pk == reborn.pk
