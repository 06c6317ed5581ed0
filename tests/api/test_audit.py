"""Finding 11 (a) of issue 12: the deletion audit is readable through the API."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from app.models import DeletionAudit, Product
from app.services.context import change_context
from app.services.tokens import create_token
from tests.api.conftest import ApiClient, assert_error_shape, user_with
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

URL = "/api/audit/deletions"


@pytest.fixture
def auditor(db):
    return ApiClient(create_token(user_with("view_deletionaudit"), "audit")[1])


def _delete(sku: str, user=None) -> None:
    with change_context(user=user, source="test"):
        Product.objects.get(sku=sku).delete()


def test_lists_deletions_newest_first_with_snapshot_and_who(auditor):
    deleter = user_with(username="deleter")
    ProductFactory(sku="D-1", name="Gone", price=Decimal("9.99"), stock=4)
    ProductFactory(sku="D-2")
    _delete("D-1", deleter)
    _delete("D-2")
    response = auditor.get(URL)
    assert response.status_code == 200, response.content
    items = response.json()["items"]
    assert [i["snapshot"]["sku"] for i in items] == ["D-2", "D-1"]
    gone = items[1]
    assert gone["model_label"] == "app.Product"
    assert gone["snapshot"]["sku"] == "D-1" and gone["snapshot"]["price"] == "9.99"
    assert gone["snapshot"]["stock"] == 4
    assert (gone["changed_by"], gone["source"]) == ("deleter", "test")
    assert response.json()["next_after"] is None


def test_cursor_pagination_and_filters(auditor):
    for i in range(5):
        ProductFactory(sku=f"C-{i}")
        _delete(f"C-{i}")
    seen, after = [], None
    while True:
        params = {"limit": 2, **({"after": after} if after else {})}
        body = auditor.get(URL, params).json()
        seen += [i["snapshot"]["sku"] for i in body["items"]]
        after = body["next_after"]
        if after is None:
            break
    assert seen == [f"C-{i}" for i in reversed(range(5))]
    pk = DeletionAudit.objects.get(snapshot__sku="C-2").object_pk
    body = auditor.get(URL, {"model": "app.Product", "object_pk": pk}).json()
    assert [i["snapshot"]["sku"] for i in body["items"]] == ["C-2"]
    assert auditor.get(URL, {"model": "auth.User"}).json()["items"] == []


def test_needs_the_view_permission(reader_api, anon):
    assert_error_shape(anon.get(URL), 401)
    body = assert_error_shape(reader_api.get(URL), 403)
    assert "app.view_deletionaudit" in body["detail"]


def test_bad_parameters_are_422(auditor):
    for params in ({"limit": 0}, {"after": "x"}, {"model": "no dots"}):
        assert_error_shape(auditor.get(URL, params), 422)


def test_a_control_character_in_a_parameter_is_400_naming_it(auditor):
    body = assert_error_shape(auditor.get(URL, {"object_pk": "a\x01"}), 400)
    assert body["errors"][0]["loc"] == ["query", "object_pk"]


def test_in_the_openapi_schema():
    schema = Client().get("/api/openapi.json").json()
    operation = schema["paths"]["/api/audit/deletions"]["get"]
    assert {p["name"] for p in operation["parameters"]} >= {"after", "limit", "model"}
    assert "DeletionPage" in schema["components"]["schemas"]
