"""Issue 14, step 7: the product page shows stock per location and active reservations,
the dashboard the reservations expiring soon; the admin keeps levels and reservations
read-only."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from app.models import Location, Product, Reservation, StockLevel
from app.services import reservations
from app.services.stock import transfer_stock

pytestmark = pytest.mark.django_db


@pytest.fixture
def stocked(db):
    product = Product.objects.create(sku="PG-1", name="Page product", price="1.00", stock=12)
    Location.objects.create(code="NORTH", name="North store")
    transfer_stock(product, "MAIN", "NORTH", 5, user=None)
    reservations.reserve(product, 3, user=None, location="NORTH", reference="order-88")
    return product


def test_product_page_shows_locations_reservations_and_ledger_locations(logged_in, stocked):
    html = logged_in.get("/products/PG-1/").content.decode()
    assert "9 available (not reserved)" in html
    section = html.split('id="locations"')[1].split("</section>")[0]
    assert "North store" in section
    rows = section.split("<tr data-location=")[1:]
    cells = [[cell.split("<")[0] for cell in row.split('class="num">')[1:]] for row in rows]
    assert cells == [["7", "0", "7"], ["5", "3", "2"]]
    held = html.split('id="reservations"')[1].split("</section>")[0]
    assert "order-88" in held and "NORTH" in held
    ledger = html.split('id="movements"')[1].split("</section>")[0]
    assert ledger.count("<td>NORTH</td>") == 1 and ledger.count("<td>MAIN</td>") == 2


def test_stock_chart_draws_the_total_and_each_location_from_the_ledger(logged_in, stocked):
    from django.utils import timezone

    from app.selectors.dashboard import stock_series

    series = {
        line.label: [v for _, v in line.points] for line in stock_series(stocked, timezone.now())
    }
    # initial stock 12 at MAIN, then the transfer of 5 (two rows), then now.
    assert series == {"total": [12, 12, 12, 12], "MAIN": [12, 7, 7], "NORTH": [5, 5]}
    html = logged_in.get("/products/PG-1/").content.decode()
    chart = html.split('id="stock-chart"')[1].split("</section>")[0]
    assert chart.count("<polyline") == 3
    assert 'data-series="NORTH"' in chart and "NORTH: 5" in chart and "total: 12" in chart


def test_dashboard_lists_reservations_expiring_soon(logged_in, stocked):
    """Within STOCKPIPE_RESERVATION_EXPIRING_SOON (6 h) only: order-88 holds for the
    default 24 h."""
    from datetime import timedelta

    from django.utils import timezone

    html = logged_in.get("/").content.decode()
    section = html.split('id="expiring-reservations"')[1].split("</section>")[0]
    assert "order-88" not in section and "No active reservation lapses soon." in section
    soon = timezone.now() + timedelta(hours=5)
    reservations.reserve(stocked, 1, user=None, reference="order-89", expires_at=soon)
    html = logged_in.get("/").content.decode()
    section = html.split('id="expiring-reservations"')[1].split("</section>")[0]
    assert "order-89" in section and "PG-1" in section and "order-88" not in section


def test_admin_keeps_levels_and_reservations_read_only(stocked):
    User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests-1")
    client = Client()
    client.login(username="boss", password="pw-for-tests-1")
    level = StockLevel.objects.filter(product=stocked).first()
    hold = Reservation.objects.get()
    assert client.get("/admin/app/stocklevel/").status_code == 200
    assert client.get("/admin/app/reservation/").status_code == 200
    assert client.get("/admin/app/location/").status_code == 200
    assert client.get("/admin/app/stocklevel/add/").status_code == 403
    assert client.get("/admin/app/reservation/add/").status_code == 403
    client.post(f"/admin/app/reservation/{hold.pk}/change/", {"status": "released"})
    client.post(f"/admin/app/stocklevel/{level.pk}/change/", {"quantity": 99})
    hold.refresh_from_db()
    level_after = StockLevel.objects.get(pk=level.pk)
    assert hold.status == "active" and level_after.quantity == level.quantity
    north = Location.objects.get(code="NORTH")
    assert client.post(f"/admin/app/location/{north.pk}/delete/").status_code == 403
