"""Finding 11 (e) of issue 12: a bearer token decides alone, even beside a session cookie.

A script running in a browser profile (or a tool sharing a cookie jar) sends both; the
token must authenticate the request and no CSRF token may be asked for, on the execute
view (a plain Django view) and on the Ninja endpoints alike. Cookie-only requests still
need CSRF, and a wrong token is 401 rather than a fall-back to the cookie.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from app.models import PipelineRun, Product
from app.services.tokens import create_token
from tests.api.conftest import user_with
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

SPEC = {"steps": [{"op": "adjust_stock", "deltas": {"B-1": -1}}]}


@pytest.fixture
def browser(db) -> Client:
    """A browser-like client (CSRF enforced) with a session of a user with every right."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with("run_pipeline", "change_product", username="browser"))
    return client


@pytest.fixture
def token_user(db):
    return user_with("run_pipeline", "change_product", username="script")


@pytest.fixture
def bearer(token_user) -> dict[str, str]:
    return {"Authorization": f"Bearer {create_token(token_user, 't')[1]}"}


@pytest.fixture
def product(db):
    return ProductFactory(sku="B-1", stock=10, price=Decimal("5.00"))


def _execute(client: Client, headers: dict[str, str]):
    return client.post(
        "/api/pipelines/execute", SPEC, content_type="application/json", headers=headers
    )


def test_execute_uses_the_token_beside_a_session_without_csrf(browser, bearer, token_user, product):
    response = _execute(browser, bearer)
    assert response.status_code == 200, response.content
    assert PipelineRun.objects.get(pk=response.json()["run_id"]).user == token_user
    assert Product.objects.get(sku="B-1").stock == 9


def test_execute_with_a_wrong_token_beside_a_session_is_401(browser, product):
    response = _execute(browser, {"Authorization": "Bearer sp_nope_nope"})
    assert response.status_code == 401, response.content
    assert Product.objects.get(sku="B-1").stock == 10


def test_execute_with_the_session_alone_still_needs_csrf(browser, product):
    response = _execute(browser, {})
    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]


def test_ninja_write_uses_the_token_beside_a_session_without_csrf(browser, bearer, product):
    response = browser.patch(
        "/api/products/B-1", {"price": "6.00"}, content_type="application/json", headers=bearer
    )
    assert response.status_code == 200, response.content
    assert browser.get("/api/auth/me", headers=bearer).json()["username"] == "script"


def test_ninja_with_a_wrong_token_beside_a_session_is_401(browser, product):
    csrf = browser.get("/api/auth/csrf").json()["csrf_token"]
    response = browser.patch(
        "/api/products/B-1",
        {"price": "6.00"},
        content_type="application/json",
        headers={"Authorization": "Bearer sp_nope_nope", "X-CSRFToken": csrf},
    )
    assert response.status_code == 401, response.content
    assert Product.objects.get(sku="B-1").price == Decimal("5.00")
