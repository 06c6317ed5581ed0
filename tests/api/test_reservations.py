"""Issue 14, step 3: reservations never oversell; commit consumes, release gives back,
expiry ends due holds once; all idempotent."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from app.models import Location, Product, Reservation, StockLevel, StockMovement
from app.services import reservations
from app.services.stock import adjust_stock, transfer_stock

from .conftest import assert_error_shape

pytestmark = pytest.mark.django_db


@pytest.fixture
def hot(db):
    return Product.objects.create(sku="HOT-1", name="Hot", price="1.00", stock=10)


def reserve(api, **body):
    return api.post("/api/reservations", {"sku": "HOT-1", **body})


def test_reservations_hold_stock_and_a_hold_that_does_not_fit_is_a_409(api, hot):
    first = reserve(api, quantity=6, reference="order-1", idempotency_key="r1")
    assert first.status_code == 201, first.content
    assert first.json()["status"] == "active" and first.json()["reference"] == "order-1"
    refused = assert_error_shape(reserve(api, quantity=5), 409)
    assert refused["available"] == 4 and refused["errors"][0]["loc"] == ["body", "quantity"]
    assert reserve(api, quantity=4).status_code == 201
    assert api.get("/api/products/HOT-1").json()["available"] == 0
    # The same request again: the first reservation, nothing more held.
    again = reserve(api, quantity=6, reference="order-1", idempotency_key="r1")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert Reservation.objects.count() == 2
    assert_error_shape(reserve(api, quantity=1, idempotency_key="r1"), 409)
    # The same key for another order is another request, not a replay of order-1's hold.
    assert_error_shape(reserve(api, quantity=6, reference="order-2", idempotency_key="r1"), 409)
    # On-hand stock that reservations need cannot be removed.
    removal = api.post("/api/products/HOT-1/stock", {"delta": -1})
    assert assert_error_shape(removal, 409)["stock"] == 0


def test_commit_consumes_the_stock_and_release_gives_it_back(api, hot):
    held = reserve(api, quantity=3, reference="order-7").json()
    other = reserve(api, quantity=2).json()
    committed = api.post(f"/api/reservations/{held['id']}/commit")
    assert committed.status_code == 200 and committed.json()["status"] == "committed"
    hot.refresh_from_db()
    assert hot.stock == 7
    row = StockMovement.objects.filter(product=hot).latest("id")
    assert (row.delta, row.location.code) == (-3, "MAIN")
    assert row.reason == f"reservation {held['id']} committed (order-7)"
    again = api.post(f"/api/reservations/{held['id']}/commit")
    assert again.status_code == 200 and again["Idempotent-Replayed"] == "true"
    assert Product.objects.get(pk=hot.pk).stock == 7
    assert_error_shape(api.post(f"/api/reservations/{held['id']}/release"), 409)
    released = api.post(f"/api/reservations/{other['id']}/release")
    assert released.json()["status"] == "released"
    assert_error_shape(api.post(f"/api/reservations/{other['id']}/commit"), 409)
    assert api.get("/api/products/HOT-1").json()["available"] == 7
    assert_error_shape(api.post("/api/reservations/999999/commit"), 404)


def test_reservations_at_a_location_count_there_and_for_the_product(api, hot):
    north = Location.objects.create(code="NORTH", name="North")
    transfer_stock(hot, "MAIN", "NORTH", 4, user=None)
    assert reserve(api, quantity=3, location="NORTH").status_code == 201
    refused = assert_error_shape(reserve(api, quantity=2, location="NORTH"), 409)
    assert refused["available"] == 1
    # Units held at NORTH cannot leave it.
    with pytest.raises(reservations.InsufficientStock):
        transfer_stock(hot, "NORTH", "MAIN", 2, user=None)
    # A hold naming no location fits what the product has left: 10 - 3.
    anywhere = reserve(api, quantity=7).json()
    assert_error_shape(reserve(api, quantity=1), 409)
    detail = api.get("/api/products/HOT-1").json()
    assert detail["available"] == 0
    assert {p["code"]: p["reserved"] for p in detail["locations"]} == {"MAIN": 0, "NORTH": 3}
    # Committing the location-less hold takes MAIN's 6 then NORTH's one free unit.
    api.post(f"/api/reservations/{anywhere['id']}/commit")
    levels = dict(StockLevel.objects.filter(product=hot).values_list("location_id", "quantity"))
    assert levels == {Location.objects.get(code="MAIN").pk: 0, north.pk: 3}
    hot.refresh_from_db()
    assert hot.stock == 3


def test_list_filters_and_get(api, reader_api, hot):
    a = reserve(api, quantity=1, reference="A").json()
    reserve(api, quantity=1, reference="B")
    api.post(f"/api/reservations/{a['id']}/release")
    listed = reader_api.get("/api/reservations", {"status": "active"}).json()
    assert [r["reference"] for r in listed["items"]] == ["B"]
    assert reader_api.get("/api/reservations", {"reference": "A"}).json()["count"] == 1
    assert reader_api.get(f"/api/reservations/{a['id']}").json()["status"] == "released"
    assert_error_shape(reader_api.post("/api/reservations", {"sku": "HOT-1", "quantity": 1}), 403)
    assert_error_shape(reader_api.post(f"/api/reservations/{a['id']}/commit"), 403)
    assert_error_shape(reserve(api, quantity=0), 422)
    assert_error_shape(api.post("/api/reservations", {"sku": "NOPE", "quantity": 1}), 404)
    # An expiry in the past is invalid input: 422 naming the field, nothing held.
    past = (timezone.now() - timedelta(minutes=1)).isoformat()
    invalid = assert_error_shape(reserve(api, quantity=1, expires_at=past), 422)
    assert invalid["errors"][0]["loc"] == ["body", "expires_at"]
    # Without a UTC offset it is ambiguous: 422 naming the field too (it was a 500).
    naive = assert_error_shape(reserve(api, quantity=1, expires_at="2030-01-01T00:00:00"), 422)
    assert naive["errors"][0]["loc"][-1] == "expires_at", naive
    assert Reservation.objects.count() == 2


def test_due_reservations_expire_once_and_stop_holding_at_once(api, hot):
    soon = timezone.now() + timedelta(seconds=1)
    held = reservations.reserve(hot, 8, user=None, expires_at=soon).reservation
    assert reserve(api, quantity=3).status_code == 409
    later = timezone.now() + timedelta(seconds=2)
    # Past due, not yet swept: no longer holds, cannot be committed.
    assert reservations.expire_due(now=later) == 1
    assert reservations.expire_due(now=later) == 0
    out = io.StringIO()
    call_command("expire_reservations", stdout=out)
    assert out.getvalue() == "0 reservation(s) expired.\n"
    held.refresh_from_db()
    assert held.status == "expired" and held.ended_at is not None
    with pytest.raises(reservations.ReservationClosed):
        reservations.commit(held.pk, user=None)
    assert reserve(api, quantity=10).status_code == 201
    with pytest.raises(reservations.InsufficientStock):  # all 10 held again
        adjust_stock(hot, -1, user=None, reason="sold elsewhere")


def test_an_expiry_not_in_the_future_is_invalid_input(hot):
    now = timezone.now()
    for expires_at in (now - timedelta(seconds=1), now):
        with pytest.raises(reservations.InvalidReservation) as invalid:
            reservations.reserve(hot, 1, user=None, expires_at=expires_at)
        assert (invalid.value.status, invalid.value.field) == (422, "expires_at")
    assert not Reservation.objects.exists()


def test_a_commit_that_no_longer_finds_the_units_is_a_409_with_what_is_available(api, hot):
    held = reserve(api, quantity=7, reference="order-9").json()
    Product.objects.filter(pk=hot.pk).update(stock=5)  # a stock count found 5 (at MAIN)
    ledger = StockMovement.objects.count()
    refused = assert_error_shape(api.post(f"/api/reservations/{held['id']}/commit"), 409)
    assert refused["errors"][0]["loc"] == ["body", "quantity"]
    assert refused["available"] == refused["stock"] == 5
    assert Reservation.objects.get(pk=held["id"]).status == "active"
    assert StockMovement.objects.count() == ledger
    assert Product.objects.get(pk=hot.pk).stock == 5


def test_a_commit_at_a_location_is_refused_with_the_units_there(hot):
    Location.objects.create(code="NORTH", name="North")
    transfer_stock(hot, "MAIN", "NORTH", 4, user=None)
    held = reservations.reserve(hot, 3, user=None, location="NORTH").reservation
    # A count at NORTH found 2 of the 4 (the product still has 6 at MAIN).
    StockLevel.objects.filter(product=hot, location__code="NORTH").update(quantity=2)
    with pytest.raises(reservations.ReservationRefused) as refused:
        reservations.commit(held.pk, user=None)
    assert (refused.value.status, refused.value.field, refused.value.stock) == (409, "quantity", 2)
    assert "at NORTH" in refused.value.message
    held.refresh_from_db()
    assert held.status == "active"


def test_a_new_reservation_is_answered_as_it_reads_back(api, hot):
    """The answer to a create is not read back from the database: it must equal what a GET
    then returns, times in UTC whatever offset the client sent."""
    later = (timezone.now() + timedelta(hours=1)).astimezone(timezone.get_fixed_timezone(120))
    created = reserve(api, quantity=2, expires_at=later.isoformat())
    assert created.status_code == 201, created.content
    body = created.json()
    assert body == api.get(f"/api/reservations/{body['id']}").json()
    assert body["expires_at"].endswith("Z")
