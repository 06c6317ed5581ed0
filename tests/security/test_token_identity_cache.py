"""Finding 1 of issue 12: with the Redis cache, a token's cached identity must be the user's.

The identity cached for a bearer token was rebuilt with ``Model.from_db`` from a field list
in another order than the model's, so a non-superuser's flags and username were swapped on
every request after the first: 403 for writes, 500 for ``/api/auth/me``.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from app.models import Product
from app.services.tokens import create_token, user_for_token
from tests.api.conftest import ApiClient, user_with
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _client(*codenames: str) -> tuple[ApiClient, object]:
    user = user_with(*codenames, username="clerk", is_staff=False, is_superuser=False)
    return ApiClient(create_token(user, "only what it needs")[1]), user


def test_patch_with_only_change_product_works_on_every_request(redis_cache):
    ProductFactory(sku="T-1", price=Decimal("10.00"))
    client, _ = _client("change_product")
    for cents in range(5):
        price = f"11.0{cents}"
        response = client.patch("/api/products/T-1", {"price": price})
        assert response.status_code == 200, (cents, response.content)
    assert Product.objects.get(sku="T-1").price == Decimal("11.04")


def test_run_pipeline_token_runs_on_every_request(redis_cache):
    ProductFactory(sku="T-2", stock=10)
    client, _ = _client("run_pipeline")
    for _ in range(3):
        response = client.post(
            "/api/pipelines/execute",
            {"steps": [{"op": "adjust_stock", "deltas": {"T-2": -1}}]},
        )
        assert response.status_code == 200, response.content
    assert Product.objects.get(sku="T-2").stock == 7


def test_me_reports_the_true_identity_on_every_request(redis_cache):
    client, user = _client("change_product")
    expected = {
        "id": user.pk,
        "username": "clerk",
        "is_staff": False,
        "permissions": ["app.change_product"],
    }
    for _ in range(3):
        response = client.get("/api/auth/me")
        assert response.status_code == 200, response.content
        assert response.json() == expected


def test_cached_identity_has_every_flag_right(redis_cache):
    """The cached user equals the database user field by field, for any mix of flags."""
    for staff in (True, False):
        user = user_with(is_staff=staff, is_superuser=False)
        _, raw = create_token(user, "t")
        user_for_token(raw)  # fills the cache
        cached = user_for_token(raw)
        fresh = get_user_model().objects.get(pk=user.pk)
        for name in ("pk", "username", "is_active", "is_staff", "is_superuser"):
            assert getattr(cached, name) == getattr(fresh, name), name


@pytest.mark.parametrize("demote", ["save", "queryset_update"])
def test_a_demoted_superuser_loses_superuser_rights_on_the_next_request(redis_cache, demote):
    """A superuser's identity is never cached: a demotion counts on the next request however
    it is written, even by ``queryset.update()``, which sends no signal (as for the
    permission cache, ``app.services.permissions``)."""
    ProductFactory(sku="T-3", price=Decimal("10.00"))
    admin = user_with(username="root", is_staff=True, is_superuser=True)
    client = ApiClient(create_token(admin, "all rights")[1])
    for cents in range(2):  # a second request: from the cache, if anything was cached
        response = client.patch("/api/products/T-3", {"price": f"12.0{cents}"})
        assert response.status_code == 200, response.content
    if demote == "save":
        admin.is_superuser = False
        admin.save()
    else:
        get_user_model().objects.filter(pk=admin.pk).update(is_superuser=False)
    response = client.patch("/api/products/T-3", {"price": "13.00"})
    assert response.status_code == 403, response.content
    assert client.get("/api/auth/me").json()["permissions"] == []
    assert Product.objects.get(sku="T-3").price == Decimal("12.01")
