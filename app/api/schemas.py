"""Request and response schemas shared by the API's routers.

Input constraints mirror the database columns (lengths, 32-bit integers, 12.2 decimals,
no NUL characters, which PostgreSQL cannot store), so bad input is a 422 that names the
field instead of a database error.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Annotated, Any

from ninja import Schema
from pydantic import AwareDatetime, Field, StringConstraints

from ..core import domain
from ..core.domain import Label, SkuRef

if TYPE_CHECKING:
    from ..models import PriceHistory, StockMovement

MAX_ID = 2**63 - 1
ObjectId = Annotated[int, Field(ge=1, le=MAX_ID)]

# Field rules are the domain's (app.core.domain), shared with the pipelines, forms and models.
# ``Sku`` here is a SKU in a URL path or filter: any stored SKU, so legacy products whose SKU
# breaks today's rule stay reachable; a product is created only with a ``NewSku``.
Sku = SkuRef
NewSku = domain.Sku
Name = domain.Name
Price = domain.Price
StockLevel = domain.Stock
Threshold = domain.Threshold
Text200 = Label


class Page(Schema):
    """Page-number pagination: ``count`` is the total number of items."""

    count: int
    page: int
    page_size: int
    items: list[Any]


def paginate(queryset, page: int, page_size: int) -> dict:
    """A page of a queryset or of a list (a run's diff or rejected rows)."""
    count = len(queryset) if isinstance(queryset, list) else queryset.count()
    start = (page - 1) * page_size
    items = list(queryset[start : start + page_size]) if start < count else []
    return {"count": count, "page": page, "page_size": page_size, "items": items}


def changed_by_name(obj: PriceHistory | StockMovement) -> str | None:
    """The username of the user a history row names, else None. The API's history pages
    read their users after their rows (``app.selectors.history``): a user deleted in between
    is found by neither, and the row shows nobody, as it will a moment later (deleting a
    user sets the rows' ``changed_by`` to null)."""
    user = obj.changed_by if obj.changed_by_id else None
    return user.get_username() if user is not None else None


PageNumber = Annotated[int, Field(ge=1, le=1_000_000, description="1-based page number")]
PageSize = Annotated[int, Field(ge=1, le=200, description="Items per page (max 200)")]


# --- products ---------------------------------------------------------------------------


class ProductOut(Schema):
    id: int
    sku: str
    name: str
    price: Decimal
    stock: int
    low_stock_threshold: int
    is_low_stock: bool
    created_at: datetime
    updated_at: datetime


class LocationStockOut(Schema):
    code: str
    name: str
    active: bool
    quantity: int = Field(description="On hand at this location")
    reserved: int = Field(description="Held by active reservations naming this location")
    available: int = Field(description="quantity - reserved, never below zero")
    low_stock_threshold: int | None = Field(
        default=None, description="This location's own low-stock threshold (null: none)"
    )


class LocationThresholdIn(Schema):
    low_stock_threshold: Threshold | None = Field(
        description="Alert when this location's stock goes below it (null: no alert here)"
    )


class ProductDetailOut(ProductOut):
    """A product with its Omnibus reference price (EU Directive 98/6/EC art. 6a) and its
    stock per location.

    ``prior_price`` is the lowest price of the 30 days before the current reduction and
    ``discount_percent`` the reduction against it (rounded down); both are null when the
    current price is not a reduction. ``available`` is ``stock`` minus the active
    reservations, never below zero.
    """

    prior_price: Decimal | None = None
    discount_percent: Decimal | None = None
    available: int = 0
    locations: list[LocationStockOut] = []


class ProductPage(Schema):
    """Cursor pagination by SKU: pass ``next_after`` as ``after`` to get the next page."""

    items: list[ProductOut]
    next_after: str | None


class ProductIn(Schema):
    sku: NewSku
    name: Name
    price: Price
    stock: StockLevel = 0
    low_stock_threshold: Threshold | None = None


class ProductPatch(Schema):
    """Only the fields sent are changed; null is not a value for any of them."""

    name: Name = None
    price: Price = None
    stock: StockLevel = None
    low_stock_threshold: Threshold = None


# --- stock ------------------------------------------------------------------------------

LocationCode = Annotated[NewSku, Field(description="A location's code (the SKU rule)")]
Quantity = Annotated[int, Field(ge=1, le=domain.MAX_STOCK)]
IdempotencyKey = Annotated[
    str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")
]


class StockIn(Schema):
    delta: domain.Delta = Field(
        description="Units to add (positive) or remove (negative); not zero."
    )
    location: LocationCode | None = Field(
        default=None, description="Location code (unset: the default location)"
    )
    reason: Text200 = ""
    idempotency_key: (
        Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00]+$")]
        | None
    ) = None


class MovementOut(Schema):
    id: int
    sku: str
    location: str = Field(description="Code of the location the move happened at")
    delta: int
    stock_after: int
    reason: str
    idempotency_key: str | None
    created_at: datetime
    changed_by: str | None
    source: str

    @staticmethod
    def resolve_changed_by(obj) -> str | None:
        return changed_by_name(obj)

    @staticmethod
    def resolve_location(obj) -> str:
        return obj.location.code


class TransferIn(Schema):
    from_location: LocationCode
    to_location: LocationCode
    quantity: Quantity
    reason: Text200 = ""
    idempotency_key: IdempotencyKey | None = None


class TransferOut(Schema):
    sku: str
    from_location: str
    to_location: str
    quantity: int
    movements: list[MovementOut]


# --- locations --------------------------------------------------------------------------


class LocationIn(Schema):
    code: LocationCode
    name: Name
    active: bool = True


class LocationPatch(Schema):
    """Only the fields sent are changed; the code never changes (the ledger names it)."""

    name: Name = None
    active: bool = None


class LocationOut(Schema):
    id: int
    code: str
    name: str
    active: bool
    created_at: datetime


class LocationPage(Page):
    items: list[LocationOut]


# --- reservations -----------------------------------------------------------------------


class ReservationIn(Schema):
    sku: Sku
    quantity: Quantity
    location: LocationCode | None = Field(
        default=None, description="Hold at this location (unset: anywhere)"
    )
    reference: Text200 = Field(default="", description="e.g. an order number")
    # Aware only: a naive time compared with the server's aware clock would be a 500.
    expires_at: AwareDatetime | None = Field(
        default=None,
        description="When the hold lapses, with a UTC offset (unset: now + the configured TTL)",
    )
    idempotency_key: IdempotencyKey | None = None


class ReservationOut(Schema):
    id: int
    sku: str
    location: str | None
    quantity: int
    reference: str
    status: str
    expires_at: datetime
    idempotency_key: str | None
    created_at: datetime
    ended_at: datetime | None
    changed_by: str | None
    source: str

    @staticmethod
    def resolve_location(obj) -> str | None:
        return obj.location.code if obj.location_id else None

    @staticmethod
    def resolve_changed_by(obj) -> str | None:
        return obj.changed_by.get_username() if obj.changed_by_id else None


class ReservationPage(Page):
    items: list[ReservationOut]


# --- history ----------------------------------------------------------------------------


class PriceChangeOut(Schema):
    id: int
    sku: str
    old_price: Decimal
    new_price: Decimal
    changed_at: datetime
    changed_by: str | None
    source: str

    @staticmethod
    def resolve_changed_by(obj) -> str | None:
        return changed_by_name(obj)


class PriceChangePage(Page):
    items: list[PriceChangeOut]


class PriceAtOut(Schema):
    sku: str
    at: datetime
    price: Decimal
    changed_at: datetime | None = Field(
        description="When this price was set (null: unchanged since the product was created)."
    )


# --- alerts -----------------------------------------------------------------------------


class AlertOut(Schema):
    id: int
    sku: str
    name: str
    stock: int
    threshold: int
    is_open: bool
    opened_at: datetime
    resolved_at: datetime | None
    delivery_status: str
    attempts: int
    last_error: str
    next_attempt_at: datetime | None
    sent_at: datetime | None


class AlertPage(Page):
    items: list[AlertOut]


# --- pipelines --------------------------------------------------------------------------


class RunOut(Schema):
    id: int
    name: str
    status: str
    dry_run: bool
    mode: str
    user: str | None
    steps_done: int
    steps_total: int
    rows_done: int
    rows_total: int
    result: Any | None
    error: Any | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    payload_pruned_at: datetime | None

    @staticmethod
    def resolve_user(obj) -> str | None:
        return obj.user.get_username() if obj.user_id else None


class RunPage(Page):
    items: list[RunOut]


# --- tokens -----------------------------------------------------------------------------


class TokenIn(Schema):
    name: Annotated[str, StringConstraints(min_length=1, max_length=100, pattern=r"^[^\x00]+$")]


class TokenOut(Schema):
    id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class NewTokenOut(TokenOut):
    token: str = Field(description="The secret; shown only in this response.")


class TokenPage(Page):
    items: list[TokenOut]
