from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from app.models import PriceHistory, Product
from tests.api.conftest import assert_error_shape
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def priced(db):
    """A product created 10 days ago whose price went 10 -> 12 (5 days ago) -> 15 (1 day ago)."""
    now = timezone.now()
    product = ProductFactory(sku="P-1", price=Decimal("10.00"))
    product.price = Decimal("12.00")
    product.save()
    product.price = Decimal("15.00")
    product.save()
    Product.objects.filter(pk=product.pk).update(created_at=now - timedelta(days=10))
    first, second = PriceHistory.objects.filter(sku="P-1").order_by("id")
    PriceHistory.objects.filter(pk=first.pk).update(changed_at=now - timedelta(days=5))
    PriceHistory.objects.filter(pk=second.pk).update(changed_at=now - timedelta(days=1))
    return now


def test_history_newest_first_paginated(reader_api, priced):
    body = reader_api.get("/api/products/P-1/price-history", {"page_size": 1}).json()
    assert body["count"] == 2
    assert [(i["old_price"], i["new_price"]) for i in body["items"]] == [("12.00", "15.00")]
    page2 = reader_api.get("/api/products/P-1/price-history", {"page_size": 1, "page": 2}).json()
    assert [i["new_price"] for i in page2["items"]] == ["12.00"]
    beyond = reader_api.get("/api/products/P-1/price-history", {"page": 9}).json()
    assert beyond["items"] == [] and beyond["count"] == 2


def test_history_errors(reader_api, anon, priced):
    assert_error_shape(anon.get("/api/products/P-1/price-history"), 401)
    assert_error_shape(reader_api.get("/api/products/NOPE/price-history"), 404)
    assert_error_shape(reader_api.get("/api/products/P-1/price-history", {"page": 0}), 422)


def test_history_of_product_without_changes_is_empty(reader_api):
    ProductFactory(sku="QUIET")
    assert reader_api.get("/api/products/QUIET/price-history").json()["items"] == []


@pytest.mark.parametrize(
    ("days_ago", "price"),
    [(7, "10.00"), (3, "12.00"), (0, "15.00"), (5, "12.00")],
)
def test_price_at(reader_api, priced, days_ago, price):
    at = (priced - timedelta(days=days_ago)).isoformat()
    response = reader_api.get("/api/products/P-1/price-at", {"at": at})
    assert response.status_code == 200, response.content
    assert response.json()["price"] == price


def test_price_at_naive_time_means_utc(reader_api, priced):
    at = (priced - timedelta(days=3)).replace(tzinfo=None).isoformat()
    assert reader_api.get("/api/products/P-1/price-at", {"at": at}).json()["price"] == "12.00"


def test_price_at_errors(reader_api, priced):
    before = (priced - timedelta(days=30)).isoformat()
    assert_error_shape(reader_api.get("/api/products/P-1/price-at", {"at": before}), 404)
    assert_error_shape(reader_api.get("/api/products/P-1/price-at", {"at": "yesterday"}), 422)
    assert_error_shape(reader_api.get("/api/products/P-1/price-at"), 422)
    far = "0001-01-01T00:00:00+05:00"
    body = assert_error_shape(reader_api.get("/api/products/P-1/price-at", {"at": far}), 422)
    assert body["errors"][0]["loc"] == ["query", "at"]
    now = priced.isoformat()
    assert_error_shape(reader_api.get("/api/products/NOPE/price-at", {"at": now}), 404)


def test_history_goes_with_the_deleted_product(reader_api, priced):
    """History belongs to the product (tests/api/test_history_belongs_to_product.py): once
    it is deleted its SKU names nothing; the rows stay, with their SKU, for the audit."""
    Product.objects.get(sku="P-1").delete()
    at = (priced - timedelta(days=3)).isoformat()
    assert_error_shape(reader_api.get("/api/products/P-1/price-at", {"at": at}), 404)
    assert_error_shape(reader_api.get("/api/products/P-1/price-history"), 404)
    assert PriceHistory.objects.filter(sku="P-1", product__isnull=True).count() == 2
