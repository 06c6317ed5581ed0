"""Issue 14's page sections in a real browser: stock per location after a transfer, the
product's active reservations, the stock-over-time chart from the ledger, and the
dashboard's reservations expiring soon. Changes go through the API (a bearer token) or the
services, as a client would make them; the pages are compared with the database."""

from __future__ import annotations

import time
from datetime import datetime, timedelta

import pytest
from django.test import override_settings
from django.utils import timezone

from app.models import Location, Product, Reservation, StockLevel, StockMovement
from app.services import reservations
from app.services.tokens import create_token
from tests.browser.conftest import log_in
from tests.factories import ProductFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def api(page, staff_user):
    """POST JSON to the API with the staff user's bearer token; the parsed answer."""
    _, raw = create_token(staff_user, "browser tests")

    def post(path: str, data: dict | None = None, status: int = 200) -> dict:
        response = page.request.post(
            path, data=data or {}, headers={"Authorization": f"Bearer {raw}"}
        )
        assert response.status == status, (path, response.status, response.text())
        return response.json()

    return post


@pytest.fixture
def laptop(transactional_db):
    product = ProductFactory(sku="LAP-1", name="Laptop", stock=20, low_stock_threshold=2)
    Location.objects.create(code="NORTH", name="North store")
    return product


def location_rows(page) -> dict[str, list[str]]:
    """Stock per location as shown: code -> [on hand, reserved, available]."""
    rows = page.locator("#locations tbody tr")
    return {
        row.get_attribute("data-location"): row.locator("td.num").all_inner_texts()
        for row in rows.all()
    }


def levels_in_database(product: Product) -> dict[str, list[str]]:
    held: dict[str | None, int] = {}
    for hold in Reservation.objects.filter(product=product, status="active"):
        code = hold.location.code if hold.location_id else None
        held[code] = held.get(code, 0) + hold.quantity
    return {
        code: [str(n), str(held.get(code, 0)), str(max(n - held.get(code, 0), 0))]
        for code, n in StockLevel.objects.filter(product=product).values_list(
            "location__code", "quantity"
        )
    }


def test_stock_per_location_matches_the_database_after_a_transfer(page, staff_user, laptop, api):
    log_in(page, staff_user, next_url="/products/LAP-1/")
    assert location_rows(page) == {"MAIN": ["20", "0", "20"]}

    moved = api(
        "/api/products/LAP-1/transfer",
        {"from_location": "MAIN", "to_location": "NORTH", "quantity": 7},
        status=201,
    )
    assert [m["location"] for m in moved["movements"]] == ["MAIN", "NORTH"]
    api(
        "/api/products/LAP-1/stock",
        {"delta": -2, "location": "NORTH", "reason": "damaged"},
        status=201,
    )
    page.reload()
    shown = location_rows(page)
    assert (
        shown
        == levels_in_database(laptop)
        == {
            "MAIN": ["13", "0", "13"],
            "NORTH": ["5", "0", "5"],
        }
    )
    assert (
        page.locator('#locations tr[data-location="NORTH"] td')
        .first.inner_text()
        .startswith("North store")
    )
    assert page.text_content("#stock .value").strip() == "18"
    ledger = [
        r.locator("td").all_inner_texts()[1:3] for r in page.locator("#movements tbody tr").all()
    ]
    assert ledger[:3] == [["NORTH", "-2"], ["NORTH", "+7"], ["MAIN", "-7"]]


def test_active_reservations_are_listed_until_committed_or_released(page, staff_user, laptop, api):
    api(
        "/api/products/LAP-1/transfer",
        {"from_location": "MAIN", "to_location": "NORTH", "quantity": 6},
        status=201,
    )
    expires = (timezone.now() + timedelta(hours=3)).replace(microsecond=0)
    by_api = api(
        "/api/reservations",
        {
            "sku": "LAP-1",
            "quantity": 4,
            "location": "NORTH",
            "reference": "order-17",
            "expires_at": expires.isoformat(),
        },
        status=201,
    )
    by_service = reservations.reserve(laptop, 3, user=None, reference="order-18").reservation
    log_in(page, staff_user, next_url="/products/LAP-1/")

    rows = page.locator("#reservations tbody tr")
    assert [r.get_attribute("data-reservation") for r in rows.all()] == [
        str(by_api["id"]),
        str(by_service.pk),
    ]  # soonest to lapse first: 3 h, then the default 24 h
    first = rows.nth(0).locator("td")
    assert first.nth(0).inner_text().startswith("order-17")
    assert first.nth(1).inner_text() == "NORTH" and first.nth(2).inner_text() == "4"
    when = first.nth(3).locator("time")
    assert datetime.fromisoformat(when.get_attribute("datetime")) == expires
    assert when.inner_text() == expires.strftime("%Y-%m-%d %H:%M")
    second = rows.nth(1).locator("td")
    assert second.nth(0).inner_text().startswith("order-18")
    assert second.nth(1).inner_text() == "any" and second.nth(2).inner_text() == "3"
    stamp = second.nth(3).locator("time").get_attribute("datetime")
    assert datetime.fromisoformat(stamp) == by_service.expires_at
    assert (
        location_rows(page)
        == levels_in_database(laptop)
        == {
            "MAIN": ["14", "0", "14"],
            "NORTH": ["6", "4", "2"],
        }
    )
    assert page.text_content("#available").startswith("13 available")

    api(f"/api/reservations/{by_api['id']}/commit")
    page.reload()
    assert [r.get_attribute("data-reservation") for r in rows.all()] == [str(by_service.pk)]
    assert (
        location_rows(page)
        == levels_in_database(laptop)
        == {
            "MAIN": ["14", "0", "14"],
            "NORTH": ["2", "0", "2"],
        }
    )
    assert page.text_content("#stock .value").strip() == "16"

    api(f"/api/reservations/{by_service.pk}/release")
    page.reload()
    assert rows.count() == 0
    assert page.text_content("#reservations .empty") == "No stock is reserved."
    assert page.text_content("#available").startswith("16 available")


def ledger_by_time() -> tuple[list[datetime], dict[str, dict[datetime, int]]]:
    """The chart's table computed forward from the ledger: after each distinct time, the
    total and each location's running sum (from the first row that touches it)."""
    times: list[datetime] = []
    after: dict[str, dict[datetime, int]] = {"total": {}}
    running: dict[str, int] = {}
    for at, code, delta, stock_after in StockMovement.objects.order_by(
        "created_at", "id"
    ).values_list("created_at", "location__code", "delta", "stock_after"):
        if not times or times[-1] != at:
            times.append(at)
        running[code] = running.get(code, 0) + delta
        after["total"][at] = stock_after
        after.setdefault(code, {})[at] = running[code]
    return times, after


def ledger_by_row() -> dict[str, list[int]]:
    """Each series' value after each of its ledger rows: the total's ``stock_after``, a
    location's running sum of its deltas."""
    out: dict[str, list[int]] = {"total": []}
    for code, delta, stock_after in StockMovement.objects.order_by("created_at", "id").values_list(
        "location__code", "delta", "stock_after"
    ):
        out["total"].append(stock_after)
        values = out.setdefault(code, [])
        values.append((values[-1] if values else 0) + delta)
    return out


def test_stock_chart_shows_the_ledger_per_location_and_in_total(
    page, staff_user, laptop, api, shoot
):
    api(
        "/api/products/LAP-1/transfer",
        {"from_location": "MAIN", "to_location": "NORTH", "quantity": 7},
        status=201,
    )
    api("/api/products/LAP-1/stock", {"delta": -4, "reason": "sold"}, status=201)
    api(
        "/api/products/LAP-1/stock",
        {"delta": 3, "location": "NORTH", "reason": "found"},
        status=201,
    )
    log_in(page, staff_user, next_url="/products/LAP-1/")

    chart = page.locator("svg.stock-chart")
    chart.wait_for()
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 150
    laptop.refresh_from_db()
    current = {"total": laptop.stock} | dict(
        StockLevel.objects.filter(product=laptop).values_list("location__code", "quantity")
    )
    assert current == {"total": 19, "MAIN": 9, "NORTH": 10}

    # The SVG: one line per series, its values in data-values, the latest in the legend.
    by_row = ledger_by_row()
    assert by_row == {"total": [20, 20, 20, 16, 19], "MAIN": [20, 13, 9], "NORTH": [7, 10]}
    series = chart.locator("g.series")
    assert [g.get_attribute("data-series") for g in series.all()] == ["total", "MAIN", "NORTH"]
    for g in series.all():
        label = g.get_attribute("data-series")
        values = [int(v) for v in g.get_attribute("data-values").split()]
        assert values == [*by_row[label], current[label]], label
        assert g.locator("text.legend").text_content() == f"{label}: {current[label]}"
        assert len(g.locator("polyline").get_attribute("points").split()) == 2 * len(values) - 1

    # The table twin: one row per ledger time and one for now; "—" before a series starts.
    times, after = ledger_by_time()
    page.click("#stock-chart summary")
    table = page.locator("#stock-chart-data")
    table.wait_for()
    shoot(page, "stock-chart")
    heads = table.locator("thead th").all_text_contents()
    assert heads == ["When", "total", "MAIN", "NORTH"]
    body = table.locator("tbody tr").all()
    assert len(body) == len(times) + 1
    for row, at in zip(body, times, strict=False):
        shown = datetime.fromisoformat(row.locator("time").get_attribute("datetime"))
        assert shown == at
        cells = row.locator("td.num").all_inner_texts()
        expected = []
        for label in heads[1:]:
            seen = [v for t, v in after.get(label, {}).items() if t <= at]
            expected.append(str(seen[-1]) if seen else "—")
        assert cells == expected, at
    assert body[-1].locator("td.num").all_inner_texts() == [
        str(current[label]) for label in heads[1:]
    ]
    assert body[0].locator("td.num").all_inner_texts() == ["20", "20", "—"]


def wait_until(moment: datetime) -> None:
    while timezone.now() < moment:
        time.sleep(0.1)


def test_dashboard_lists_only_reservations_expiring_within_the_window(
    page, staff_user, laptop, api, shoot
):
    now = timezone.now()

    def hold(reference: str, expires: datetime, **extra) -> int:
        payload = {"sku": "LAP-1", "quantity": 1, "reference": reference}
        return api(
            "/api/reservations", {**payload, "expires_at": expires.isoformat(), **extra}, 201
        )["id"]

    soon = hold("order-soon", now + timedelta(hours=2), location="MAIN")
    hold("order-later", now + timedelta(hours=7))  # outside the default 6 h window
    hold("order-far", now + timedelta(days=30))
    released = hold("order-released", now + timedelta(hours=1))
    api(f"/api/reservations/{released}/release")
    # Expiries counted from each request (a loaded machine may be slow between them); the
    # sweep runs as of a moment after the first only.
    swept_at = timezone.now() + timedelta(seconds=2)
    swept = hold("order-swept", swept_at)
    lapsed_at = timezone.now() + timedelta(seconds=4)
    lapsed = hold("order-lapsed", lapsed_at)
    wait_until(swept_at)
    assert reservations.expire_due(now=swept_at + timedelta(milliseconds=100)) == 1
    assert Reservation.objects.get(pk=swept).status == "expired"
    wait_until(lapsed_at + timedelta(milliseconds=100))
    assert Reservation.objects.get(pk=lapsed).status == "active"  # due, not swept yet

    log_in(page, staff_user)
    shoot(page, "dashboard-expiring")
    rows = page.locator("#expiring-reservations tbody tr")
    assert [r.get_attribute("data-reservation") for r in rows.all()] == [str(soon)]
    cells = rows.first.locator("td")
    assert cells.nth(0).inner_text() == "Laptop LAP-1"
    assert [cells.nth(i).inner_text() for i in (1, 2, 3)] == ["order-soon", "MAIN", "1"]
    expires = Reservation.objects.get(pk=soon).expires_at
    assert datetime.fromisoformat(cells.nth(4).locator("time").get_attribute("datetime")) == expires
    assert cells.nth(4).inner_text().replace("\xa0", " ").startswith("in 1 hour")
    cells.nth(0).locator("a").click()
    page.wait_for_url("**/products/LAP-1/")

    # A wider window (the setting) takes in the 7-hour hold, never the far one.
    with override_settings(STOCKPIPE_RESERVATION_EXPIRING_SOON=8 * 3600):
        page.goto("/")
        refs = page.locator("#expiring-reservations tbody tr td:nth-child(2)").all_inner_texts()
        assert refs == ["order-soon", "order-later"]
