"""Issue 14, step 4: per-location thresholds open their own episodes per (product,
location), with the seed's e-mail wording plus the location."""

from __future__ import annotations

import pytest

from app.models import Location, Product, StockAlert
from app.services import reservations
from app.services.alerts import alert_message
from app.services.stock import adjust_stock, set_location_threshold, transfer_stock

pytestmark = pytest.mark.django_db


def episodes(product: Product) -> list[tuple]:
    rows = StockAlert.objects.filter(product=product).order_by("id")
    return [
        (code, stock, threshold, resolved is None)
        for code, stock, threshold, resolved in rows.values_list(
            "location__code", "stock", "threshold", "resolved_at"
        )
    ]


@pytest.fixture
def product(db):
    Location.objects.create(code="NORTH", name="North store")
    product = Product.objects.create(sku="LA-1", name="Lamp", price="1.00", stock=10)
    transfer_stock(product, "MAIN", "NORTH", 4, user=None)
    return product


def test_a_location_below_its_threshold_has_its_own_episode(product):
    set_location_threshold(product, "NORTH", 3)
    assert episodes(product) == []
    transfer_stock(product, "NORTH", "MAIN", 2, user=None)  # total unchanged, NORTH 2
    assert episodes(product) == [("NORTH", 2, 3, True)]
    alert = StockAlert.objects.get()
    message = alert_message(alert)
    assert message.subject == "Low Stock Alert: Lamp at North store (NORTH)"
    assert message.body == "Only 2 units remaining at North store (NORTH)"
    held = reservations.reserve(product, 1, user=None, location="NORTH").reservation
    assert len(episodes(product)) == 1  # still the same episode
    reservations.release(held.pk, user=None)
    transfer_stock(product, "MAIN", "NORTH", 2, user=None)
    assert episodes(product) == [("NORTH", 2, 3, False)]  # resolved
    # A stock move at the location, through the change pipeline, opens the next one.
    adjust_stock(product, -2, user=None, reason="broken", location="NORTH")
    assert episodes(product)[-1] == ("NORTH", 2, 3, True)
    # The product's own alert is separate: its total (8) is above 5.
    assert not StockAlert.objects.filter(location__isnull=True).exists()
    set_location_threshold(product, "NORTH", None)  # no threshold: the episode ends
    assert StockAlert.objects.filter(resolved_at__isnull=True).count() == 0


def test_available_stock_at_the_location_counts(product):
    set_location_threshold(product, "NORTH", 3)
    reservations.reserve(product, 2, user=None, location="NORTH")
    assert episodes(product) == [("NORTH", 2, 3, True)]


def test_the_api_sets_a_location_threshold(product, client, django_user_model):
    from django.contrib.auth.models import Permission

    from app.services.tokens import create_token

    user = django_user_model.objects.create_user("t", "t@example.com", "pw-for-tests-1")
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    _, raw = create_token(user, "t")
    response = client.patch(
        "/api/products/LA-1/locations/NORTH",
        {"low_stock_threshold": 5},
        content_type="application/json",
        headers={"Authorization": f"Bearer {raw}"},
    )
    assert response.status_code == 200, response.content
    assert response.json()["low_stock_threshold"] == 5
    assert episodes(product) == [("NORTH", 4, 5, True)]
    detail = client.get("/api/products/LA-1", headers={"Authorization": f"Bearer {raw}"}).json()
    assert {p["code"]: p["low_stock_threshold"] for p in detail["locations"]} == {
        "MAIN": None,
        "NORTH": 5,
    }


@pytest.mark.sqlite
def test_open_location_episodes_are_read_from_their_partial_index(product):
    """Every change set asks which products have a per-location threshold or an open
    per-location episode: the episodes come from ``one_open_stock_alert_per_location``
    alone, not from a scan of every alert (a 1,000,000-row upsert asked 20 times, over
    100,000 product-level alerts)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.utils.timezone import now

    from app.services.alerts import _with_location_thresholds

    north = Location.objects.get(code="NORTH")
    other = Product.objects.create(sku="LA-2", name="Desk", price="1.00", stock=1)
    StockAlert.objects.create(
        product=product, location=north, stock=1, threshold=2, opened_at=now()
    )
    assert StockAlert.objects.filter(product=other, resolved_at=None).exists()  # below 5
    with CaptureQueriesContext(connection) as queries:
        assert _with_location_thresholds("default") == {product.pk}
    [sql] = [q["sql"] for q in queries.captured_queries if "app_stockalert" in q["sql"]]
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN QUERY PLAN {sql}")
        plan = " ".join(str(row[-1]) for row in cursor.fetchall())
    assert "one_open_stock_alert_per_location" in plan and "TEMP B-TREE" not in plan, plan
