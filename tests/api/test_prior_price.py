"""GET /api/products/<sku> carries the Omnibus prior price when the price is a reduction."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from app.models import PriceHistory
from app.services.tokens import create_token
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def auth_headers():
    user = User.objects.create_user("reader", "", "pw-for-tests-1")
    return {"HTTP_AUTHORIZATION": f"Bearer {create_token(user, 't')[1]}"}


def test_reduction_shows_prior_price_and_discount(client, auth_headers):
    product = ProductFactory(sku="OMNI-1", price=Decimal("100.00"))
    for price in ("80.00", "120.00", "90.00"):
        product.price = Decimal(price)
        product.save()
    now = timezone.now()
    # Spread the changes over time: 80 ten days ago, 120 five days ago, 90 now.
    rows = list(PriceHistory.objects.filter(product=product).order_by("id"))
    for row, days in zip(rows, (10, 5, 0), strict=True):
        PriceHistory.objects.filter(pk=row.pk).update(changed_at=now - timedelta(days=days))
    body = client.get("/api/products/OMNI-1", **auth_headers).json()
    assert body["price"] == "90.00"
    assert body["prior_price"] == "80.00"  # lowest of the 30 days before the reduction
    assert body["discount_percent"] is None  # 90 is not below 80: no discount to announce


def test_plain_reduction_and_no_reduction(client, auth_headers):
    product = ProductFactory(sku="OMNI-2", price=Decimal("50.00"))
    body = client.get("/api/products/OMNI-2", **auth_headers).json()
    assert body["prior_price"] is None and body["discount_percent"] is None
    product.price = Decimal("40.00")
    product.save()
    body = client.get("/api/products/OMNI-2", **auth_headers).json()
    assert (body["prior_price"], body["discount_percent"]) == ("50.00", "20.0")
