from decimal import Decimal

import pytest

from app.models import DeletionAudit, PriceHistory, Product, StockMovement
from tests.api.conftest import assert_error_shape
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def test_list_needs_authentication(anon):
    response = anon.get("/api/products")
    assert_error_shape(response, 401)
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_list_filters_and_cursor_pagination(reader_api):
    ProductFactory(sku="A-1", name="Red chair", stock=1, low_stock_threshold=5)
    ProductFactory(sku="A-2", name="Blue chair", stock=50)
    ProductFactory(sku="B-1", name="Red table", stock=2, low_stock_threshold=5)

    skus = lambda r: [p["sku"] for p in r.json()["items"]]  # noqa: E731
    assert skus(reader_api.get("/api/products")) == ["A-1", "A-2", "B-1"]
    assert skus(reader_api.get("/api/products", {"sku_prefix": "A-"})) == ["A-1", "A-2"]
    assert skus(reader_api.get("/api/products", {"search": "red"})) == ["A-1", "B-1"]
    assert skus(reader_api.get("/api/products", {"low_stock": "true"})) == ["A-1", "B-1"]
    assert skus(reader_api.get("/api/products", {"low_stock": "false"})) == ["A-2"]
    both = reader_api.get("/api/products", {"low_stock": "true", "sku_prefix": "B"})
    assert skus(both) == ["B-1"]

    first = reader_api.get("/api/products", {"limit": 2}).json()
    assert [p["sku"] for p in first["items"]] == ["A-1", "A-2"]
    assert first["next_after"] == "A-2"
    second = reader_api.get("/api/products", {"limit": 2, "after": first["next_after"]}).json()
    assert [p["sku"] for p in second["items"]] == ["B-1"]
    assert second["next_after"] is None


def test_list_rejects_bad_query(reader_api):
    body = assert_error_shape(reader_api.get("/api/products", {"limit": 0}), 422)
    assert body["errors"][0]["loc"] == ["query", "limit"]
    assert_error_shape(reader_api.get("/api/products", {"low_stock": "maybe"}), 422)
    # Control characters in a query string: refused before any view (InputGuardMiddleware).
    body = assert_error_shape(reader_api.get("/api/products", {"search": "a\x00b"}), 400)
    assert body["errors"][0]["loc"] == ["query", "search"]


def test_get_by_sku(reader_api, product):
    body = reader_api.get("/api/products/WIDGET-1").json()
    assert body["sku"] == "WIDGET-1"
    assert Decimal(body["price"]) == product.price
    assert body["stock"] == 10
    assert body["is_low_stock"] is False


def test_get_unknown_sku_is_json_404(reader_api):
    assert_error_shape(reader_api.get("/api/products/NOPE"), 404)


def test_create_needs_add_permission(reader_api, anon):
    payload = {"sku": "NEW-1", "name": "New", "price": "3.50"}
    assert_error_shape(anon.post("/api/products", payload), 401)
    assert_error_shape(reader_api.post("/api/products", payload), 403)
    assert not Product.objects.filter(sku="NEW-1").exists()


def test_create_records_initial_stock_by_token_user(api, writer):
    response = api.post(
        "/api/products", {"sku": "NEW-1", "name": "New", "price": "3.50", "stock": 7}
    )
    assert response.status_code == 201, response.content
    assert response.json()["sku"] == "NEW-1"
    product = Product.objects.get(sku="NEW-1")
    assert product.price == Decimal("3.50")
    movement = StockMovement.objects.get(sku="NEW-1")
    assert (movement.delta, movement.changed_by, movement.source) == (7, writer, "api")


def test_create_duplicate_sku_is_409(api, product):
    response = api.post("/api/products", {"sku": "WIDGET-1", "name": "Dup", "price": 1})
    assert_error_shape(response, 409)


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"sku": "X", "name": "X", "price": "-1"}, "price"),
        ({"sku": "X", "name": "X", "price": "1.234"}, "price"),
        ({"sku": "X", "name": "X", "price": "1", "stock": -1}, "stock"),
        ({"sku": "X", "name": "X", "price": "1", "stock": 2**31}, "stock"),
        ({"sku": "a/b", "name": "X", "price": "1"}, "sku"),
        ({"sku": "X", "name": " ", "price": "1"}, "name"),
        ({"name": "X", "price": "1"}, "sku"),
    ],
)
def test_create_rejects_bad_input_naming_the_field(api, payload, field):
    body = assert_error_shape(api.post("/api/products", payload), 422)
    assert any(e["loc"][-1] == field for e in body["errors"]), body
    assert not Product.objects.exists()


def test_create_with_malformed_json_is_400(api):
    response = api.client.post(
        "/api/products", "{not json", content_type="application/json", headers=api.headers
    )
    assert_error_shape(response, 400)


def test_patch_changes_only_sent_fields_and_records_history(api, writer, product):
    response = api.patch("/api/products/WIDGET-1", {"price": "12.00", "low_stock_threshold": 3})
    assert response.status_code == 200, response.content
    product.refresh_from_db()
    assert product.price == Decimal("12.00")
    assert product.low_stock_threshold == 3
    assert product.name == "Blue widget"
    change = PriceHistory.objects.get(sku="WIDGET-1")
    assert (change.old_price, change.new_price) == (Decimal("10.00"), Decimal("12.00"))
    assert (change.changed_by, change.source) == (writer, "api")


def test_patch_stock_and_name(api, product):
    response = api.patch("/api/products/WIDGET-1", {"stock": 4, "name": "Green widget"})
    assert response.json()["stock"] == 4
    assert response.json()["name"] == "Green widget"
    assert StockMovement.objects.filter(sku="WIDGET-1", delta=-6, stock_after=4).exists()


def test_patch_errors(api, reader_api, product):
    assert_error_shape(reader_api.patch("/api/products/WIDGET-1", {"price": "1"}), 403)
    assert_error_shape(api.patch("/api/products/NOPE", {"price": "1"}), 404)
    body = assert_error_shape(api.patch("/api/products/WIDGET-1", {"price": None}), 422)
    assert body["errors"][0]["loc"][-1] == "price"
    assert_error_shape(api.patch("/api/products/WIDGET-1", {"stock": -5}), 422)
    product.refresh_from_db()
    assert (product.price, product.stock) == (Decimal("10.00"), 10)


def test_delete_leaves_audit(api, reader_api, writer, product):
    assert_error_shape(reader_api.delete("/api/products/WIDGET-1"), 403)
    response = api.delete("/api/products/WIDGET-1")
    assert response.status_code == 204
    assert not Product.objects.filter(sku="WIDGET-1").exists()
    audit = DeletionAudit.objects.get()
    assert (audit.changed_by, audit.source) == (writer, "api")
    assert_error_shape(api.delete("/api/products/WIDGET-1"), 404)
