"""Issue 14, step 5: stock.transferred and reservation.* events, through the outbox to a
real receiver, signed and in order on the product's stream."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from app.models import Location, Product, Reservation, WebhookDelivery
from app.services import reservations
from app.services.stock import transfer_stock

pytestmark = pytest.mark.django_db(transaction=True)

EVENTS = [
    "stock.transferred",
    "reservation.created",
    "reservation.committed",
    "reservation.released",
    "reservation.expired",
]


def test_transfer_and_reservation_events_arrive_in_order(subscribe, receiver, deliver):
    subscribe(events=EVENTS)
    product = Product.objects.create(sku="EV-1", name="Ev", price="1.00", stock=20)
    Location.objects.create(code="NORTH", name="North")
    transfer_stock(product, "MAIN", "NORTH", 5, user=None)
    first = reservations.reserve(product, 3, user=None, reference="o-1").reservation
    second = reservations.reserve(product, 2, user=None, location="NORTH").reservation
    third = reservations.reserve(product, 1, user=None).reservation
    reservations.commit(first.pk, user=None)
    reservations.release(second.pk, user=None)
    Reservation.objects.filter(pk=third.pk).update(expires_at=timezone.now() - timedelta(1))
    assert reservations.expire_due() == 1
    streams = set(WebhookDelivery.objects.values_list("stream", flat=True))
    assert streams == {f"product:{product.pk}"}
    deliver()
    bodies = receiver.bodies()
    assert [(b["type"], b["data"].get("reservation", {}).get("id")) for b in bodies] == [
        ("stock.transferred", None),
        ("reservation.created", first.pk),
        ("reservation.created", second.pk),
        ("reservation.created", third.pk),
        ("reservation.committed", first.pk),
        ("reservation.released", second.pk),
        ("reservation.expired", third.pk),
    ]
    moved = bodies[0]["data"]
    assert (moved["from_location"], moved["to_location"], moved["quantity"]) == (
        "MAIN",
        "NORTH",
        5,
    )
    assert moved["product"]["stock"] == 20
    assert bodies[2]["data"]["reservation"]["location"] == "NORTH"
    assert bodies[4]["data"]["reservation"]["status"] == "committed"


def test_a_pipeline_transfer_sends_one_event_per_product(subscribe, receiver, deliver):
    from app.pipelines.service import process_pipeline

    subscribe(events=["stock.transferred"])
    Location.objects.create(code="NORTH", name="North")
    for i in range(3):
        Product.objects.create(sku=f"PT-{i}", name="Pt", price="1.00", stock=5)
    step = {"op": "transfer_stock", "from_location": "MAIN", "to_location": "NORTH"}
    result = process_pipeline({"steps": [{**step, "quantities": {"PT-0": 1, "PT-2": 5}}]})
    assert result["status"] == "succeeded", result
    deliver()
    moved = {(b["data"]["product"]["sku"], b["data"]["quantity"]) for b in receiver.bodies()}
    assert moved == {("PT-0", 1), ("PT-2", 5)}
