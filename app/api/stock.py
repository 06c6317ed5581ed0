"""Stock moves: ``POST /api/products/{sku}/stock`` and the product's ledger.

The endpoint is a thin shell over ``app.services.stock.adjust_stock`` (atomic, never below
zero, idempotent per key); refusals become 409 with the current stock.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from ..models import Product, StockMovement
from ..selectors.history import stock_movements
from ..selectors.replica import replica_reads
from ..services.stock import adjust_stock, availability, set_location_threshold, transfer_stock
from .auth import AUTH, require_perm
from .errors import StockConflictOut, responses
from .schemas import (
    LocationCode,
    LocationStockOut,
    LocationThresholdIn,
    MovementOut,
    Page,
    PageNumber,
    PageSize,
    Sku,
    StockIn,
    TransferIn,
    TransferOut,
    paginate,
)

router = Router(tags=["stock"], auth=AUTH)


class MovementPage(Page):
    items: list[MovementOut]


@router.post(
    "/{sku}/stock",
    response={
        200: MovementOut,
        201: MovementOut,
        **responses(400, 401, 403, 404, 422),
        409: StockConflictOut,
    },
)
def adjust_product_stock(request: HttpRequest, response: HttpResponse, payload: StockIn, sku: Sku):
    """Add or remove stock atomically.

    201: the move was applied. 200: the idempotency key was seen before; nothing changed and
    the first movement is returned (header ``Idempotent-Replayed: true``). 409: the move
    would take stock below zero (or reuse a key for another move); ``stock`` is the current stock.
    """
    require_perm(request, "app.change_product")
    if payload.delta == 0:
        from ninja.errors import ValidationError

        raise ValidationError([{"loc": ["body", "payload", "delta"], "msg": "Must not be zero."}])
    result = adjust_stock(
        sku,
        payload.delta,
        user=request.auth,
        reason=payload.reason,
        idempotency_key=payload.idempotency_key,
        location=payload.location,
    )
    movement = StockMovement.objects.select_related("changed_by", "location").get(
        pk=result.movement.pk
    )
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
        return Status(200, movement)
    return Status(201, movement)


@router.post(
    "/{sku}/transfer",
    response={
        200: TransferOut,
        201: TransferOut,
        **responses(400, 401, 403, 404, 422),
        409: StockConflictOut,
    },
)
def transfer_product_stock(
    request: HttpRequest, response: HttpResponse, payload: TransferIn, sku: Sku
):
    """Move units between two locations of the product; the total does not change.

    201: moved (two ledger rows). 200: the idempotency key was seen before; nothing changed
    (header ``Idempotent-Replayed: true``). 409: the source has fewer units available
    (on hand minus its reservations) than asked; ``stock`` is what it has available. 422:
    unknown or deactivated location, or the same location twice.
    """
    require_perm(request, "app.change_product")
    result = transfer_stock(
        sku,
        payload.from_location,
        payload.to_location,
        payload.quantity,
        user=request.auth,
        reason=payload.reason,
        idempotency_key=payload.idempotency_key,
    )
    movements = StockMovement.objects.filter(pk__in=[m.pk for m in result.movements])
    body = {
        "sku": result.sku,
        "from_location": result.source.code,
        "to_location": result.target.code,
        "quantity": result.quantity,
        "movements": list(movements.select_related("changed_by", "location").order_by("pk")),
    }
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
        return Status(200, body)
    return Status(201, body)


@router.patch(
    "/{sku}/locations/{code}",
    response={200: LocationStockOut, **responses(400, 401, 403, 404, 422)},
)
def set_product_location_threshold(
    request: HttpRequest, payload: LocationThresholdIn, sku: Sku, code: LocationCode
):
    """Set the product's own low-stock threshold at a location: its episodes there open
    and resolve separately from the product's (e-mail names the location)."""
    require_perm(request, "app.change_product")
    level = set_location_threshold(sku, code, payload.low_stock_threshold)
    product = Product.objects.get(pk=level.product_id)
    return next(place for place in availability(product)[1] if place.code == code)


@router.get("/{sku}/stock-movements", response={200: MovementPage, **responses(401, 404, 422)})
def list_stock_movements(
    request: HttpRequest,
    sku: Sku,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """The current product's stock ledger, newest first (read by the product's id: a SKU
    deleted and created again does not show the deleted product's moves)."""
    replica_reads(request)
    product = get_object_or_404(Product.objects.only("pk"), sku=sku)
    return paginate(stock_movements(product.pk), page, page_size)
