"""Issue 14, step 2: locations API, stock moves at a location, transfers, stock per location
in the product detail."""

from __future__ import annotations

import pytest

from app.models import Location, Product, StockAlert, StockLevel, StockMovement

from .conftest import assert_error_shape, user_with

pytestmark = pytest.mark.django_db


@pytest.fixture
def north(db):
    return Location.objects.create(code="NORTH", name="North")


def levels(sku: str) -> dict[str, int]:
    rows = StockLevel.objects.filter(product__sku=sku)
    return dict(rows.values_list("location__code", "quantity"))


def test_locations_are_listed_created_updated_and_deactivated(api, reader_api):
    created = api.post("/api/locations", {"code": "SHOP-1", "name": "Shop"})
    assert created.status_code == 201, created.content
    assert created.json()["active"] is True
    assert_error_shape(api.post("/api/locations", {"code": "SHOP-1", "name": "Again"}), 409)
    body = assert_error_shape(api.post("/api/locations", {"code": "a b", "name": "x"}), 422)
    assert body["errors"][0]["loc"][-1] == "code"
    assert_error_shape(reader_api.post("/api/locations", {"code": "X", "name": "x"}), 403)
    renamed = api.patch("/api/locations/SHOP-1", {"name": "Shop one"})
    assert renamed.json()["name"] == "Shop one"
    gone = api.delete("/api/locations/SHOP-1")
    assert gone.status_code == 200 and gone.json()["active"] is False
    assert Location.objects.filter(code="SHOP-1", active=False).exists()
    listed = reader_api.get("/api/locations", {"active": "false"}).json()
    assert [item["code"] for item in listed["items"]] == ["SHOP-1"]
    assert_error_shape(api.get("/api/locations/NOPE"), 404)


def test_a_stock_move_at_a_location_and_the_detail_per_location(api, product, north):
    moved = api.post(f"/api/products/{product.sku}/stock", {"delta": 4, "location": "NORTH"})
    assert moved.status_code == 201, moved.content
    assert moved.json()["location"] == "NORTH"
    assert levels(product.sku) == {"MAIN": 10, "NORTH": 4}
    detail = api.get(f"/api/products/{product.sku}").json()
    assert detail["stock"] == 14 and detail["available"] == 14
    assert [(p["code"], p["quantity"], p["available"]) for p in detail["locations"]] == [
        ("MAIN", 10, 10),
        ("NORTH", 4, 4),
    ]
    too_many = api.post(f"/api/products/{product.sku}/stock", {"delta": -5, "location": "NORTH"})
    body = assert_error_shape(too_many, 409)
    assert body["stock"] == 4 and body["errors"][0]["loc"] == ["body", "delta"]
    unknown = api.post(f"/api/products/{product.sku}/stock", {"delta": 1, "location": "NOPE"})
    assert assert_error_shape(unknown, 422)["errors"][0]["loc"] == ["body", "location"]


def test_a_transfer_moves_stock_with_two_ledger_rows_and_no_alert(api, north):
    product = Product.objects.create(sku="T-1", name="T", price="1.00", stock=3)
    assert StockAlert.objects.filter(resolved_at__isnull=True).count() == 1  # 3 < 5
    before = StockMovement.objects.count()
    body = {"from_location": "MAIN", "to_location": "NORTH", "quantity": 2, "idempotency_key": "t1"}
    response = api.post("/api/products/T-1/transfer", body)
    assert response.status_code == 201, response.content
    data = response.json()
    assert [(m["location"], m["delta"], m["stock_after"]) for m in data["movements"]] == [
        ("MAIN", -2, 3),
        ("NORTH", 2, 3),
    ]
    assert levels("T-1") == {"MAIN": 1, "NORTH": 2}
    product.refresh_from_db()
    assert product.stock == 3
    assert StockMovement.objects.count() == before + 2
    assert StockAlert.objects.count() == 1  # the total did not change: no new episode
    # The same request again: nothing moves, the first transfer is returned.
    again = api.post("/api/products/T-1/transfer", body)
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert [m["id"] for m in again.json()["movements"]] == [m["id"] for m in data["movements"]]
    assert levels("T-1") == {"MAIN": 1, "NORTH": 2}
    reused = api.post("/api/products/T-1/transfer", {**body, "quantity": 1})
    assert_error_shape(reused, 409)


def test_a_transfer_never_takes_a_location_below_zero(api, north):
    Product.objects.create(sku="T-2", name="T", price="1.00", stock=3)
    body = {"from_location": "MAIN", "to_location": "NORTH", "quantity": 4}
    refused = assert_error_shape(api.post("/api/products/T-2/transfer", body), 409)
    assert refused["stock"] == 3 and refused["errors"][0]["loc"] == ["body", "quantity"]
    same = api.post("/api/products/T-2/transfer", {**body, "to_location": "MAIN", "quantity": 1})
    assert assert_error_shape(same, 422)["errors"][0]["loc"] == ["body", "to_location"]
    assert_error_shape(api.post("/api/products/NOPE/transfer", {**body, "quantity": 1}), 404)
    north.active = False
    north.save()
    closed = api.post("/api/products/T-2/transfer", {**body, "quantity": 1})
    assert_error_shape(closed, 422)
    assert levels("T-2") == {"MAIN": 3}


def test_a_transfer_needs_the_change_permission(north):
    from app.services.tokens import create_token

    from .conftest import ApiClient

    Product.objects.create(sku="T-3", name="T", price="1.00", stock=3)
    _, raw = create_token(user_with(), "t")
    body = {"from_location": "MAIN", "to_location": "NORTH", "quantity": 1}
    assert_error_shape(ApiClient(raw).post("/api/products/T-3/transfer", body), 403)
    assert_error_shape(ApiClient(None).post("/api/products/T-3/transfer", body), 401)


def test_setting_the_total_below_the_other_locations_is_a_409(api, product, north):
    api.post(f"/api/products/{product.sku}/stock", {"delta": 4, "location": "NORTH"})
    assert_error_shape(api.patch(f"/api/products/{product.sku}", {"stock": 3}), 409)
    assert levels(product.sku) == {"MAIN": 10, "NORTH": 4}


def test_the_default_location_cannot_be_deactivated(api, product):
    """Stock changes naming no location land there: deactivated, it would take stock in."""
    assert Location.objects.filter(code="MAIN", active=True).exists()
    body = assert_error_shape(api.patch("/api/locations/MAIN", {"active": False}), 409)
    assert "default location" in body["detail"]
    assert_error_shape(api.delete("/api/locations/MAIN"), 409)
    assert Location.objects.get(code="MAIN").active
    assert api.patch("/api/locations/MAIN", {"name": "Main store"}).status_code == 200


def test_a_key_reused_for_another_location_or_a_transfer_is_409_not_a_replay(api, north):
    Product.objects.create(sku="K-1", name="K", price="1.00", stock=20)
    url = "/api/products/K-1/stock"
    first = api.post(url, {"delta": 3, "idempotency_key": "k-loc", "location": "NORTH"})
    assert first.status_code == 201, first.content
    replay = api.post(url, {"delta": 3, "idempotency_key": "k-loc", "location": "NORTH"})
    assert replay.status_code == 200 and replay["Idempotent-Replayed"] == "true"
    assert_error_shape(api.post(url, {"delta": 3, "idempotency_key": "k-loc"}), 409)
    moved = {"from_location": "MAIN", "to_location": "NORTH", "quantity": 2}
    transfer = api.post("/api/products/K-1/transfer", {**moved, "idempotency_key": "k-move"})
    assert transfer.status_code == 201, transfer.content
    assert_error_shape(api.post(url, {"delta": -2, "idempotency_key": "k-move"}), 409)
    assert levels("K-1") == {"MAIN": 18, "NORTH": 5}
