"""Issue 14, step 5: ``set_stock``/``adjust_stock`` accept a location; both pipeline routes
give the same levels and the same ledger rows (the identity of the two routes)."""

from __future__ import annotations

import pytest

from app.models import Location, Product, StockLevel, StockMovement
from app.pipelines import staged
from app.pipelines.service import process_pipeline

pytestmark = pytest.mark.django_db

SPEC = {
    "steps": [
        {"op": "set_stock", "stock": {"P-0": 4, "P-1": 0, "P-2": 7}, "location": "NORTH"},
        {"op": "adjust_stock", "deltas": {"P-0": -1, "P-1": 2}, "location": "NORTH"},
        {"op": "adjust_stock", "deltas": {"P-2": -3}},
        {"op": "set_stock", "stock": {"P-1": 1}, "location": "NORTH"},
    ]
}


def run(route: str, monkeypatch, spec=SPEC) -> dict:
    if route == "object":
        monkeypatch.setattr(staged, "applies", lambda unit: False)
    Location.objects.create(code="NORTH", name="North")
    for i in range(3):
        Product.objects.create(sku=f"P-{i}", name="P", price="1.00", stock=10)
    return process_pipeline(spec)


def outcome() -> tuple:
    levels = sorted(StockLevel.objects.values_list("product__sku", "location__code", "quantity"))
    ledger = list(
        StockMovement.objects.order_by("id").values_list(
            "sku", "location__code", "delta", "stock_after"
        )
    )
    stock = dict(Product.objects.values_list("sku", "stock"))
    return levels, ledger, stock


@pytest.mark.parametrize("route", ["object", "sql"])
def test_location_steps_move_that_location(route, monkeypatch):
    result = run(route, monkeypatch)
    assert result["status"] == "succeeded", result
    levels, ledger, stock = outcome()
    assert levels == [
        ("P-0", "MAIN", 10),
        ("P-0", "NORTH", 3),
        ("P-1", "MAIN", 10),
        ("P-1", "NORTH", 1),
        ("P-2", "MAIN", 7),
        ("P-2", "NORTH", 7),
    ]
    assert stock == {"P-0": 13, "P-1": 11, "P-2": 14}
    assert ledger[3:] == [
        ("P-0", "NORTH", 4, 14),
        ("P-2", "NORTH", 7, 17),
        ("P-0", "NORTH", -1, 13),
        ("P-1", "NORTH", 2, 12),
        ("P-2", "MAIN", -3, 14),
        ("P-1", "NORTH", -1, 11),
    ]


def test_both_routes_give_the_same_rows(monkeypatch):
    run("sql", monkeypatch)
    sql = outcome()
    StockMovement.objects.all().delete()
    Product.objects.all().delete()
    Location.objects.filter(code="NORTH").delete()
    with monkeypatch.context() as patched:
        run("object", patched)
        assert outcome()[0] == sql[0]
        assert outcome()[2] == sql[2]
        assert [row for row in outcome()[1]] == sql[1]


@pytest.mark.parametrize("route", ["object", "sql"])
def test_a_location_step_never_goes_below_zero_there(route, monkeypatch):
    spec = {"steps": [{"op": "adjust_stock", "deltas": {"P-0": -1}, "location": "NORTH"}]}
    result = run(route, monkeypatch, spec)
    assert result["status"] == "failed"
    assert result["error"]["errors"][0]["loc"] == ["steps", 0, "deltas", "P-0"]
    spec = {"steps": [{"op": "set_stock", "stock": {"P-0": 1}, "location": "NOWHERE"}]}
    result = process_pipeline(spec)
    assert result["status"] == "failed"
    assert result["error"]["errors"][0]["loc"] == ["steps", 0, "location"]
    assert outcome()[0] == [("P-0", "MAIN", 10), ("P-1", "MAIN", 10), ("P-2", "MAIN", 10)]


def transfer_outcome() -> tuple:
    levels, ledger, stock = outcome()
    reasons = list(StockMovement.objects.order_by("id").values_list("reason", flat=True))
    return levels, ledger, stock, reasons


def test_transfer_step_has_the_same_effects_as_the_service_per_product():
    from app.services.stock import transfer_stock

    Location.objects.create(code="NORTH", name="North")
    for i in range(3):
        Product.objects.create(sku=f"P-{i}", name="P", price="1.00", stock=10)
    moves = {"P-0": 3, "P-2": 10}
    for sku, n in moves.items():
        transfer_stock(sku, "MAIN", "NORTH", n, user=None)
    by_service = transfer_outcome()
    StockMovement.objects.all().delete()
    Product.objects.all().delete()
    for i in range(3):
        Product.objects.create(sku=f"P-{i}", name="P", price="1.00", stock=10)
    step = {"op": "transfer_stock", "from_location": "MAIN", "to_location": "NORTH"}
    result = process_pipeline({"steps": [{**step, "quantities": moves}]})
    assert result["status"] == "succeeded", result
    assert transfer_outcome() == by_service
    assert by_service[0] == [
        ("P-0", "MAIN", 7),
        ("P-0", "NORTH", 3),
        ("P-1", "MAIN", 10),
        ("P-2", "MAIN", 0),
        ("P-2", "NORTH", 10),
    ]


def test_transfer_step_refuses_more_than_available_and_writes_nothing():
    from app.services import reservations

    Location.objects.create(code="NORTH", name="North")
    for i in range(2):
        Product.objects.create(sku=f"P-{i}", name="P", price="1.00", stock=10)
    reservations.reserve("P-1", 8, user=None, location="MAIN")
    before = transfer_outcome()
    step = {"op": "transfer_stock", "from_location": "MAIN", "to_location": "NORTH"}
    result = process_pipeline({"steps": [{**step, "quantities": {"P-0": 5, "P-1": 3}}]})
    assert result["status"] == "failed"
    assert [e["loc"] for e in result["error"]["errors"]] == [["steps", 0, "quantities", "P-1"]]
    assert transfer_outcome() == before
    result = process_pipeline(
        {"steps": [{**step, "to_location": "NOPE", "quantities": {"P-0": 1}}]}
    )
    assert result["error"]["errors"][0]["loc"] == ["steps", 0, "to_location"]


@pytest.mark.parametrize("route", ["object", "sql"])
def test_a_total_below_the_other_locations_fails_the_step_naming_the_sku(route, monkeypatch):
    """Found by the API fuzzer: it was an IntegrityError (500)."""
    from app.services.stock import transfer_stock

    if route == "object":
        monkeypatch.setattr(staged, "applies", lambda unit: False)
    Location.objects.create(code="NORTH", name="North")
    Product.objects.create(sku="P-0", name="P", price="1.00", stock=10)
    transfer_stock("P-0", "MAIN", "NORTH", 6, user=None)
    row = {"sku": "P-0", "name": "P", "price": "1.00", "stock": 5}
    for step, field in (
        ({"op": "set_stock", "stock": {"P-0": 5}}, "stock"),
        ({"op": "adjust_stock", "deltas": {"P-0": -5}}, "deltas"),
        # Found by the located identity test: an upsert's stock was an IntegrityError too.
        ({"op": "upsert_products", "rows": [row]}, "rows"),
        ({"op": "upsert_products", "csv": "sku,name,price,stock\nP-0,P,1.00,5\n"}, "csv"),
    ):
        result = process_pipeline({"steps": [step]})
        assert result["status"] == "failed", result
        assert result["error"]["kind"] == "failed", result
        assert result["error"]["errors"][0]["loc"] == ["steps", 0, field, "P-0"]
        assert "below the 6 units held" in result["error"]["errors"][0]["msg"]
    assert (
        process_pipeline({"steps": [{"op": "set_stock", "stock": {"P-0": 6}}]})["status"]
        == "succeeded"
    )
    assert outcome()[0] == [("P-0", "MAIN", 0), ("P-0", "NORTH", 6)]
