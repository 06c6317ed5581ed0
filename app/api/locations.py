"""Locations: list, create, update, deactivate (never deleted: the ledger names them)."""

from __future__ import annotations

from typing import Annotated

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.errors import HttpError
from pydantic import Field

from .. import conf
from ..models import Location
from .auth import AUTH, require_perm
from .errors import responses
from .schemas import (
    LocationCode,
    LocationIn,
    LocationOut,
    LocationPage,
    LocationPatch,
    PageNumber,
    PageSize,
    paginate,
)

# Optional, yet not "| None": a query parameter cannot be null (see app.api.products).
ActiveFlag = Annotated[bool, Field(description="true: only active; false: only deactivated")]

router = Router(tags=["locations"], auth=AUTH)


@router.get("", response={200: LocationPage, **responses(401, 422)})
def list_locations(
    request: HttpRequest,
    active: ActiveFlag = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    locations = Location.objects.order_by("code")
    if active is not None:
        locations = locations.filter(active=active)
    return paginate(locations, page, page_size)


@router.post("", response={201: LocationOut, **responses(400, 401, 403, 409, 422)})
def create_location(request: HttpRequest, payload: LocationIn):
    require_perm(request, "app.add_location")
    if Location.objects.filter(code=payload.code).exists():
        raise HttpError(409, f"A location with code {payload.code!r} already exists.")
    try:
        with transaction.atomic():
            location = Location.objects.create(**payload.dict())
    except IntegrityError as exc:  # created concurrently
        raise HttpError(409, f"A location with code {payload.code!r} already exists.") from exc
    return Status(201, location)


@router.get("/{code}", response={200: LocationOut, **responses(401, 404, 422)})
def get_location(request: HttpRequest, code: LocationCode):
    return get_object_or_404(Location, code=code)


def _refuse_deactivating_default(code: str) -> None:
    """Stock changes that name no location land on the default one: it must stay active."""
    if code == conf.default_location():
        raise HttpError(
            409, f"{code!r} is the default location (STOCKPIPE_DEFAULT_LOCATION): it stays active."
        )


@router.patch("/{code}", response={200: LocationOut, **responses(400, 401, 403, 404, 409, 422)})
def update_location(request: HttpRequest, payload: LocationPatch, code: LocationCode):
    """Rename, deactivate (``active: false``) or reactivate a location. The default location
    cannot be deactivated (409)."""
    require_perm(request, "app.change_location")
    changes = payload.dict(exclude_unset=True)
    if changes.get("active") is False:
        _refuse_deactivating_default(code)
    with transaction.atomic():
        location = get_object_or_404(Location.objects.select_for_update(), code=code)
        for name, value in changes.items():
            setattr(location, name, value)
        if changes:
            location.save()
    return location


@router.delete("/{code}", response={200: LocationOut, **responses(401, 403, 404, 409, 422)})
def deactivate_location(request: HttpRequest, code: LocationCode):
    """Deactivate: no stock may arrive there any more; stock there may still leave. The
    row stays, since the ledger names it. The default location cannot be deactivated (409)."""
    require_perm(request, "app.change_location")
    _refuse_deactivating_default(code)
    with transaction.atomic():
        location = get_object_or_404(Location.objects.select_for_update(), code=code)
        if location.active:
            location.active = False
            location.save(update_fields=["active"])
    return location
