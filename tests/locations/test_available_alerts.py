"""Issue 14, step 4: low-stock alerts watch available stock (on hand minus active holds);
``STOCKPIPE_LOW_STOCK_ON=on_hand`` watches stock on hand as before."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from app.models import Product, Reservation, StockAlert
from app.services import reservations

pytestmark = pytest.mark.django_db


def open_alerts(product: Product) -> list[int]:
    return list(
        StockAlert.objects.filter(product=product, resolved_at__isnull=True).values_list(
            "stock", flat=True
        )
    )


@pytest.fixture
def product(db):
    return Product.objects.create(
        sku="AV-1", name="Avail", price="1.00", stock=10, low_stock_threshold=5
    )


def test_a_reservation_opens_the_episode_and_its_release_resolves_it(product, mailoutbox):
    held = reservations.reserve(product, 6, user=None).reservation
    assert open_alerts(product) == [4]  # 10 on hand, 4 available < 5
    reservations.reserve(product, 1, user=None)
    assert StockAlert.objects.filter(product=product).count() == 1  # same episode
    reservations.release(held.pk, user=None)
    assert open_alerts(product) == []


def test_a_stock_change_crossing_only_on_available_stock_opens_it(product):
    reservations.reserve(product, 4, user=None)  # available 6
    assert open_alerts(product) == []
    product.refresh_from_db()
    product.stock = 8  # on hand stays above 5; available 4 does not
    product.save()
    assert open_alerts(product) == [4]


def test_commit_and_expiry_keep_the_episode_right(product):
    first = reservations.reserve(product, 6, user=None).reservation
    assert open_alerts(product) == [4]
    reservations.commit(first.pk, user=None)  # 4 on hand, nothing held: still low
    assert open_alerts(product) == [4]
    Product.objects.filter(pk=product.pk).update(stock=20)
    assert open_alerts(product) == []
    soon = timezone.now() + timedelta(hours=1)
    second = reservations.reserve(product, 17, user=None, expires_at=soon).reservation
    assert open_alerts(product) == [3]
    Reservation.objects.filter(pk=second.pk).update(expires_at=timezone.now())
    assert reservations.expire_due() == 1
    assert open_alerts(product) == []


def test_on_hand_setting_ignores_reservations(product, settings):
    settings.STOCKPIPE_LOW_STOCK_ON = "on_hand"
    reservations.reserve(product, 9, user=None)
    assert open_alerts(product) == []
    product.refresh_from_db()
    product.stock = 4
    product.save()
    assert open_alerts(product) == [4]


def test_a_hold_past_due_does_not_open_an_episode_the_sweep_would_resolve(product):
    """The counter counts a hold past due until it is swept; a new hold that looks low only
    because of it expires it first instead of opening an episode that flaps shut."""
    stale = reservations.reserve(product, 4, user=None).reservation  # available 6: no alert
    Reservation.objects.filter(pk=stale.pk).update(expires_at=timezone.now())
    reservations.reserve(product, 2, user=None)  # 10 - (4 + 2) = 4 < 5 by the counter
    assert open_alerts(product) == []
    assert StockAlert.objects.filter(product=product).count() == 0  # none opened and closed
    stale.refresh_from_db()
    product.refresh_from_db()
    assert stale.status == "expired"
    assert product.reserved == 2
    assert reservations.expire_due() == 0
    reservations.reserve(product, 4, user=None)  # really low now: 10 - 6 = 4
    assert open_alerts(product) == [4]


def test_holds_past_due_expired_by_a_hold_at_no_location_resolve_their_locations_alerts(product):
    """A hold naming no location that expires a past-due hold at NORTH reconciles NORTH's
    alert too: the sweep will find nothing left to expire, so nothing else would."""
    from app.models import Location
    from app.services.stock import set_location_threshold, transfer_stock

    Location.objects.create(code="NORTH", name="North store")
    transfer_stock(product, "MAIN", "NORTH", 8, user=None)
    set_location_threshold(product, "NORTH", 5)
    stale = reservations.reserve(product, 4, user=None, location="NORTH").reservation
    north = StockAlert.objects.filter(product=product, location__code="NORTH")
    assert list(north.filter(resolved_at__isnull=True).values_list("stock", flat=True)) == [4]
    Reservation.objects.filter(pk=stale.pk).update(expires_at=timezone.now())
    reservations.reserve(product, 2, user=None)  # 10 - (4 + 2) = 4 < 5: expires the stale
    stale.refresh_from_db()
    assert stale.status == "expired"
    assert not north.filter(resolved_at__isnull=True).exists()
    assert reservations.expire_due() == 0
