"""Writes commit while the shared cache is down: a cache invalidation that cannot reach Redis
is logged, not raised (``app.services.cache_guard.invalidate``), for every cache it serves."""

import pytest
from django.db import transaction
from django.test import override_settings

from app.models import PriceHistory, Product
from app.services import cache_guard

DOWN = {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/11"}


@pytest.mark.django_db(transaction=True)
def test_a_product_write_commits_while_redis_is_down(caplog):
    """The product's cached API body must be invalidated; Redis cannot be reached: the save
    and its price history commit all the same, inside a transaction and outside one."""
    product = Product.objects.create(sku="OUT-1", name="Out", price="1.00", stock=5)
    with override_settings(CACHES={"default": DOWN}):
        assert cache_guard.enabled()
        with transaction.atomic():
            product.price = "2.00"
            product.save()
        product.price = "3.00"
        product.save()
    product.refresh_from_db()
    assert str(product.price) == "3.00"
    changes = PriceHistory.objects.filter(product=product)
    assert sorted(str(change.new_price) for change in changes) == ["2.00", "3.00"]
    assert any("could not invalidate" in r.getMessage() for r in caplog.records)
