"""Reservations: hold stock for an order (``app.services.reservations``), then commit
(consume it) or release it. Create is idempotent by key; commit and release by the
reservation's state (doing it again returns it unchanged, ``Idempotent-Replayed: true``)."""

from __future__ import annotations

from typing import Annotated, Literal

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Status
from pydantic import Field

from ..models import Reservation
from ..services import reservations
from .auth import AUTH, require_perm
from .errors import ReservationConflictOut, responses
from .schemas import (
    LocationCode,
    ObjectId,
    PageNumber,
    PageSize,
    ReservationIn,
    ReservationOut,
    ReservationPage,
    Sku,
    Text200,
    paginate,
)

router = Router(tags=["reservations"], auth=AUTH)

StatusFilter = Annotated[
    Literal["active", "committed", "released", "expired"], Field(description="Only this status")
]
CONFLICT = {409: ReservationConflictOut}


def _read(pk: int) -> Reservation:
    return get_object_or_404(Reservation.objects.select_related("location", "changed_by"), pk=pk)


def _answer(response: HttpResponse, result, created: int = 200, user=None):
    reservation = _fresh(result, user) or _read(result.reservation.pk)
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
        return Status(200, reservation)
    return Status(created, reservation)


def _fresh(result, user) -> Reservation | None:
    """A reservation this request just created, answered as it was written (no read back):
    its location came with it, its author is the request's user. ``None`` otherwise."""
    reservation = result.reservation
    if result.replayed or user is None or reservation.changed_by_id != user.pk:
        return None
    reservation.changed_by = user  # its times are in UTC already, as read back (reserve)
    return reservation


@router.post(
    "",
    response={200: ReservationOut, 201: ReservationOut, **responses(400, 401, 403, 404, 422)}
    | CONFLICT,
)
def create_reservation(request: HttpRequest, response: HttpResponse, payload: ReservationIn):
    """Hold stock. 201: held. 200: the idempotency key was seen before (the first
    reservation). 409: not enough available (``available``: what is), or the key was used
    for another request. 422: invalid input naming the field: an unknown location, an
    ``expires_at`` not in the future."""
    require_perm(request, "app.add_reservation")
    result = reservations.reserve(
        payload.sku,
        payload.quantity,
        user=request.auth,
        reference=payload.reference,
        location=payload.location,
        expires_at=payload.expires_at,
        idempotency_key=payload.idempotency_key,
    )
    return _answer(response, result, created=201, user=request.auth)


@router.get("", response={200: ReservationPage, **responses(401, 422)})
def list_reservations(
    request: HttpRequest,
    sku: Sku = None,
    status: StatusFilter = None,
    location: LocationCode = None,
    reference: Text200 = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """Reservations, newest first, filtered by SKU, status, location code or reference."""
    rows = Reservation.objects.select_related("location", "changed_by")
    if sku:
        rows = rows.filter(sku=sku)
    if status:
        rows = rows.filter(status=status)
    if location:
        rows = rows.filter(location__code=location)
    if reference:
        rows = rows.filter(reference=reference)
    return paginate(rows.order_by("-created_at", "-id"), page, page_size)


@router.get("/{reservation_id}", response={200: ReservationOut, **responses(401, 404, 422)})
def get_reservation(request: HttpRequest, reservation_id: ObjectId):
    return _read(reservation_id)


@router.post(
    "/{reservation_id}/commit",
    response={200: ReservationOut, **responses(401, 403, 404, 422)} | CONFLICT,
)
def commit_reservation(request: HttpRequest, response: HttpResponse, reservation_id: ObjectId):
    """Consume the held stock (ledger rows naming the reservation) and end the hold. 409:
    it was released or has expired, or the units it holds are no longer there (a stock
    count found fewer; ``available``: what it could take, naming ``quantity``)."""
    require_perm(request, "app.change_reservation")
    return _answer(response, reservations.commit(reservation_id, user=request.auth))


@router.post(
    "/{reservation_id}/release",
    response={200: ReservationOut, **responses(401, 403, 404, 422)} | CONFLICT,
)
def release_reservation(request: HttpRequest, response: HttpResponse, reservation_id: ObjectId):
    """End the hold without consuming stock. 409: it was committed or has expired."""
    require_perm(request, "app.change_reservation")
    return _answer(response, reservations.release(reservation_id, user=request.auth))
