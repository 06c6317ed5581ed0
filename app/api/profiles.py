"""Import profiles: how a supplier's CSV/XLSX maps onto products (``"profile"`` in an
``upsert_products`` step). The rules are ``app.core.feeds``'s; a profile that breaks one is
a 422 naming the field (``["body", "payload", "columns", "VK-Preis"]``)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import ValidationError
from pydantic import Field, StringConstraints

from ..core.feeds import DECIMAL_SEPARATORS, DELIMITERS, ENCODINGS, TARGETS, THOUSANDS_SEPARATORS
from ..models import ImportProfile
from ..services.import_profiles import ProfileInvalid, save_profile
from .auth import AUTH, require_perm
from .errors import responses
from .schemas import ObjectId, Page, PageNumber, PageSize, paginate

router = Router(tags=["import profiles"], auth=AUTH)

ProfileName = Annotated[str, StringConstraints(min_length=1, max_length=100)]
Description = Annotated[str, StringConstraints(max_length=200)]
Target = Literal[TARGETS]  # type: ignore[valid-type]
Columns = Annotated[
    dict[str, Target],
    Field(description="supplier column -> product field; unmapped columns are ignored"),
]
Defaults = Annotated[
    dict[str, Any], Field(description="product field -> value used when its cell is empty")
]
Delimiter = Literal[DELIMITERS]  # type: ignore[valid-type]
Encoding = Literal[ENCODINGS]  # type: ignore[valid-type]
DecimalSeparator = Literal[DECIMAL_SEPARATORS]  # type: ignore[valid-type]
ThousandsSeparator = Literal[THOUSANDS_SEPARATORS]  # type: ignore[valid-type]
HeaderRow = Annotated[int, Field(ge=1, le=1000, description="rows above it are skipped")]


class ProfileIn(Schema):
    name: ProfileName
    description: Description = ""
    columns: Columns
    delimiter: Delimiter = Field("", description="'' detects it from the header row")
    quotechar: Annotated[str, StringConstraints(min_length=1, max_length=1)] = '"'
    encoding: Encoding = "utf-8"
    decimal_separator: DecimalSeparator = "."
    thousands_separator: ThousandsSeparator = ""
    header_row: HeaderRow = 1
    sheet: Annotated[str, StringConstraints(max_length=100)] = ""
    defaults: Defaults = {}
    price_factor: Decimal = Field(Decimal(1), description="prices are multiplied by it")
    price_round_to: Decimal | None = Field(None, description="then rounded to this step")
    clamp_stock: bool = Field(False, description="negative stock becomes 0")


class ProfilePatch(Schema):
    """Only the fields sent are changed."""

    name: ProfileName = None
    description: Description = None
    columns: Columns = None
    delimiter: Delimiter = None
    quotechar: Annotated[str, StringConstraints(min_length=1, max_length=1)] = None
    encoding: Encoding = None
    decimal_separator: DecimalSeparator = None
    thousands_separator: ThousandsSeparator = None
    header_row: HeaderRow = None
    sheet: Annotated[str, StringConstraints(max_length=100)] = None
    defaults: Defaults = None
    price_factor: Decimal = None
    price_round_to: Decimal | None = None
    clamp_stock: bool = None


class ProfileOut(Schema):
    id: int
    name: str
    description: str
    columns: dict[str, str]
    delimiter: str
    quotechar: str
    encoding: str
    decimal_separator: str
    thousands_separator: str
    header_row: int
    sheet: str
    defaults: dict[str, Any]
    price_factor: Decimal
    price_round_to: Decimal | None
    clamp_stock: bool
    created_at: datetime
    updated_at: datetime


class ProfilePage(Page):
    items: list[ProfileOut]


def _save(profile: ImportProfile | None, values: dict[str, Any]) -> ImportProfile:
    try:
        return save_profile(profile, **values)
    except ProfileInvalid as exc:
        raise ValidationError(
            [{"loc": ["body", "payload", *e["loc"]], "msg": e["msg"]} for e in exc.errors]
        ) from None


@router.get("", response={200: ProfilePage, **responses(401, 403, 422)})
def list_profiles(request: HttpRequest, page: PageNumber = 1, page_size: PageSize = 50):
    """Import profiles by name."""
    require_perm(request, "app.view_importprofile")
    return paginate(ImportProfile.objects.order_by("name"), page, page_size)


@router.post("", response={201: ProfileOut, **responses(401, 403, 422)})
def create_profile(request: HttpRequest, payload: ProfileIn):
    """Save a profile; every broken rule is reported with its field."""
    require_perm(request, "app.add_importprofile")
    return Status(201, _save(None, payload.dict()))


@router.get("/{profile_id}", response={200: ProfileOut, **responses(401, 403, 404, 422)})
def get_profile(request: HttpRequest, profile_id: ObjectId):
    require_perm(request, "app.view_importprofile")
    return get_object_or_404(ImportProfile, pk=profile_id)


@router.patch("/{profile_id}", response={200: ProfileOut, **responses(401, 403, 404, 422)})
def update_profile(request: HttpRequest, profile_id: ObjectId, payload: ProfilePatch):
    """Change the fields sent; the whole profile must still be valid."""
    require_perm(request, "app.change_importprofile")
    changes = payload.dict(exclude_unset=True)
    nulls = [k for k, v in changes.items() if v is None and k != "price_round_to"]
    if nulls:
        raise ValidationError(
            [{"loc": ["body", "payload", k], "msg": "null is not a value here"} for k in nulls]
        )
    return _save(get_object_or_404(ImportProfile, pk=profile_id), changes)


@router.delete("/{profile_id}", response={204: None, **responses(401, 403, 404, 422)})
def delete_profile(request: HttpRequest, profile_id: ObjectId):
    """Delete a profile (runs that used it keep their records)."""
    require_perm(request, "app.delete_importprofile")
    get_object_or_404(ImportProfile, pk=profile_id).delete()
    return Status(204, None)
