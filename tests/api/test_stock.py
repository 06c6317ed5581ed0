import threading

import pytest
from django.db import connection

from app.models import Product, StockAlert, StockMovement
from app.services.stock import InsufficientStock, adjust_stock
from tests.api.conftest import assert_error_shape
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

URL = "/api/products/WIDGET-1/stock"


def test_adjust_writes_ledger_row_with_user_reason_and_key(api, writer, product):
    response = api.post(URL, {"delta": -3, "reason": "sale", "idempotency_key": "order-1"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["delta"], body["stock_after"], body["reason"]) == (-3, 7, "sale")
    assert body["changed_by"] == writer.username
    product.refresh_from_db()
    assert product.stock == 7
    movement = StockMovement.objects.get(idempotency_key="order-1")
    assert (movement.delta, movement.stock_after, movement.changed_by) == (-3, 7, writer)
    assert (movement.reason, movement.source) == ("sale", "api")


def test_same_idempotency_key_applies_once_and_returns_first_result(api, product):
    payload = {"delta": -3, "reason": "sale", "idempotency_key": "order-1"}
    first = api.post(URL, payload)
    again = api.post(URL, payload)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    product.refresh_from_db()
    assert product.stock == 7
    assert StockMovement.objects.filter(sku="WIDGET-1", delta=-3).count() == 1


def test_reusing_a_key_for_another_move_is_409(api, product):
    api.post(URL, {"delta": -3, "idempotency_key": "order-1"})
    body = assert_error_shape(api.post(URL, {"delta": -4, "idempotency_key": "order-1"}), 409)
    assert body["stock"] == 7


def test_never_below_zero_409_with_current_stock(api, product):
    body = assert_error_shape(api.post(URL, {"delta": -11, "reason": "sale"}), 409)
    assert body["stock"] == 10
    assert body["errors"][0]["loc"] == ["body", "delta"]
    product.refresh_from_db()
    assert product.stock == 10
    assert not StockMovement.objects.filter(sku="WIDGET-1", delta=-11).exists()


def test_stock_can_reach_exactly_zero_and_opens_alert(api, product):
    assert api.post(URL, {"delta": -10}).json()["stock_after"] == 0
    assert StockAlert.objects.filter(sku="WIDGET-1", resolved_at__isnull=True).exists()


def test_auth_and_permission_and_input_errors(api, reader_api, anon, product):
    assert_error_shape(anon.post(URL, {"delta": 1}), 401)
    assert_error_shape(reader_api.post(URL, {"delta": 1}), 403)
    assert_error_shape(api.post("/api/products/NOPE/stock", {"delta": 1}), 404)
    assert_error_shape(api.post(URL, {"delta": 0}), 422)
    assert_error_shape(api.post(URL, {"delta": "many"}), 422)
    assert_error_shape(api.post(URL, {"delta": 2**31}), 422)
    assert_error_shape(api.post(URL, {}), 422)
    product.refresh_from_db()
    assert product.stock == 10


def test_overflow_is_refused(api):
    ProductFactory(sku="BIG", stock=2**31 - 10)
    assert_error_shape(api.post("/api/products/BIG/stock", {"delta": 100}), 409)


def test_movement_list_newest_first(reader_api, api, product):
    api.post(URL, {"delta": -1, "reason": "one"})
    api.post(URL, {"delta": -2, "reason": "two"})
    body = reader_api.get("/api/products/WIDGET-1/stock-movements", {"page_size": 2}).json()
    assert body["count"] == 3  # initial stock + two moves
    assert [m["reason"] for m in body["items"]] == ["two", "one"]
    assert_error_shape(reader_api.get("/api/products/NOPE/stock-movements"), 404)


def test_service_refuses_without_writing(writer, product):
    with pytest.raises(InsufficientStock) as info:
        adjust_stock("WIDGET-1", -20, user=writer, reason="x")
    assert info.value.stock == 10
    assert Product.objects.get(sku="WIDGET-1").stock == 10


def _in_threads(n, target):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(target())
        except Exception as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_decrements_never_go_below_zero(writer):
    ProductFactory(sku="RACE", stock=5)
    results, errors = _in_threads(
        8, lambda: adjust_stock("RACE", -1, user=writer, reason="sale").movement.stock_after
    )
    assert len(results) == 5
    assert all(isinstance(e, InsufficientStock) for e in errors) and len(errors) == 3
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert Product.objects.get(sku="RACE").stock == 0
    assert sum(StockMovement.objects.filter(sku="RACE").values_list("delta", flat=True)) == 0


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_concurrent_same_key_applies_once(writer):
    ProductFactory(sku="RACE", stock=50)
    results, errors = _in_threads(
        6, lambda: adjust_stock("RACE", -2, user=writer, reason="sale", idempotency_key="k-1")
    )
    assert errors == []
    assert len({r.movement.pk for r in results}) == 1
    assert sum(1 for r in results if not r.replayed) == 1
    assert Product.objects.get(sku="RACE").stock == 48
