import hashlib

import pytest
from django.test import Client

from app.models import ApiToken, Product
from tests.api.conftest import assert_error_shape, user_with

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"


def logged_in_client(user) -> tuple[Client, str]:
    """A browser-like client: CSRF enforced, CSRF cookie fetched, logged in via the API."""
    client = Client(enforce_csrf_checks=True)
    csrf = client.get("/api/auth/csrf").json()["csrf_token"]
    response = client.post(
        "/api/auth/login",
        {"username": user.username, "password": PASSWORD},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 200, response.content
    # Login rotates the CSRF token.
    return client, client.cookies["csrftoken"].value


def test_login_me_logout(writer):
    client, csrf = logged_in_client(writer)
    me = client.get("/api/auth/me").json()
    assert me["username"] == writer.username
    assert "app.change_product" in me["permissions"]
    response = client.post("/api/auth/logout", headers={"X-CSRFToken": csrf})
    assert response.status_code == 204
    assert_error_shape(client.get("/api/auth/me"), 401)


def test_login_needs_csrf_and_right_password(writer):
    client = Client(enforce_csrf_checks=True)
    payload = {"username": writer.username, "password": PASSWORD}
    assert_error_shape(
        client.post("/api/auth/login", payload, content_type="application/json"), 403
    )
    csrf = client.get("/api/auth/csrf").json()["csrf_token"]
    wrong = client.post(
        "/api/auth/login",
        {"username": writer.username, "password": "nope"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert_error_shape(wrong, 401)


def test_login_is_throttled(writer):
    """The request rate per address; a different account each time stays below the
    lockout's limits (tests/security/test_login_lockout.py), so this is the throttle."""
    client = Client()
    codes = [
        client.post(
            "/api/auth/login",
            {"username": f"nobody{i}", "password": "wrong"},
            content_type="application/json",
        ).status_code
        for i in range(12)
    ]
    assert codes[:10] == [401] * 10
    assert codes[10:] == [429, 429]
    payload = {"username": writer.username, "password": "wrong"}
    body = assert_error_shape(
        client.post("/api/auth/login", payload, content_type="application/json"), 429
    )
    assert body["detail"]


def test_login_throttle_ignores_spoofed_forwarded_for(writer):
    client = Client()
    codes = [
        client.post(
            "/api/auth/login",
            {"username": f"nobody{i}", "password": "wrong"},
            content_type="application/json",
            headers={"X-Forwarded-For": f"10.0.0.{i}"},
        ).status_code
        for i in range(11)
    ]
    assert codes[-1] == 429


def test_session_writes_need_csrf(writer, product):
    client, csrf = logged_in_client(writer)
    url = "/api/products/WIDGET-1/stock"
    without = client.post(url, {"delta": 1}, content_type="application/json")
    assert_error_shape(without, 403)
    with_csrf = client.post(
        url, {"delta": 1}, content_type="application/json", headers={"X-CSRFToken": csrf}
    )
    assert with_csrf.status_code == 201
    assert client.get("/api/products/WIDGET-1").json()["stock"] == 11  # reads need no CSRF


def test_anonymous_write_is_401_not_csrf_403(product):
    client = Client(enforce_csrf_checks=True)
    response = client.post(
        "/api/products/WIDGET-1/stock", {"delta": 1}, content_type="application/json"
    )
    assert_error_shape(response, 401)


def test_token_lifecycle(writer):
    client, csrf = logged_in_client(writer)
    response = client.post(
        "/api/tokens",
        {"name": "ci"},
        content_type="application/json",
        headers={"X-CSRFToken": csrf},
    )
    assert response.status_code == 201, response.content
    created = response.json()
    raw = created["token"]
    stored = ApiToken.objects.get(pk=created["id"])
    assert stored.key_hash == hashlib.sha256(raw.encode()).hexdigest()
    assert raw not in {stored.key_hash, stored.prefix, stored.name}
    assert stored.last_used_at is None

    bearer = {"Authorization": f"Bearer {raw}"}
    fresh = Client()
    assert fresh.get("/api/products", headers=bearer).status_code == 200
    stored.refresh_from_db()
    assert stored.last_used_at is not None

    listed = fresh.get("/api/tokens", headers=bearer).json()
    assert [t["name"] for t in listed["items"]] == ["ci"]
    assert "token" not in listed["items"][0]

    assert fresh.delete(f"/api/tokens/{created['id']}", headers=bearer).status_code == 204
    assert_error_shape(fresh.get("/api/products", headers=bearer), 401)
    assert client.get("/api/tokens", {"include_revoked": "true"}).json()["items"][0]["revoked_at"]


def test_token_cannot_create_tokens_and_others_tokens_are_invisible(api, reader_api, writer):
    assert_error_shape(api.post("/api/tokens", {"name": "x"}), 401)
    mine = ApiToken.objects.get(user=writer)
    assert_error_shape(reader_api.delete(f"/api/tokens/{mine.pk}"), 404)
    assert reader_api.get("/api/tokens").json()["count"] == 1
    mine.refresh_from_db()
    assert mine.revoked_at is None


def test_token_creation_is_throttled_and_validated(writer):
    client, csrf = logged_in_client(writer)

    def create(name):
        return client.post(
            "/api/tokens",
            {"name": name},
            content_type="application/json",
            headers={"X-CSRFToken": csrf},
        )

    assert_error_shape(create(""), 422)
    codes = [create(f"t{i}").status_code for i in range(11)]
    assert codes == [201] * 9 + [429, 429]  # the 422 above counted as an attempt


def test_inactive_users_token_stops_working(api, writer):
    assert api.get("/api/products").status_code == 200
    writer.is_active = False
    writer.save()
    assert_error_shape(api.get("/api/products"), 401)


def test_garbage_authorization_headers_are_401(db):
    client = Client()
    for header in ["Bearer", "Bearer ", "Bearer nope", "Basic abc", "sp_x"]:
        assert_error_shape(client.get("/api/products", headers={"Authorization": header}), 401)


def test_permission_granted_after_the_fact_is_seen(reader, reader_api, product):
    assert_error_shape(reader_api.delete("/api/products/WIDGET-1"), 403)
    reader = type(reader).objects.get(pk=reader.pk)
    reader.user_permissions.add(*user_with("delete_product").user_permissions.all())
    assert reader_api.delete("/api/products/WIDGET-1").status_code == 204
    assert not Product.objects.exists()
