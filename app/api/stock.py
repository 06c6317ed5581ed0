"""Stock moves: ``POST /api/products/{sku}/stock`` and the product's ledger.

The endpoint is a thin shell over ``app.services.stock.adjust_stock`` (atomic, never below
zero, idempotent per key); refusals become 409 with the current stock.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from ..models import Product, StockMovement
from ..selectors.replica import replica_reads
from ..services.stock import adjust_stock
from .auth import AUTH, require_perm
from .errors import StockConflictOut, responses
from .schemas import MovementOut, Page, PageNumber, PageSize, Sku, StockIn, paginate

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
    )
    movement = StockMovement.objects.select_related("changed_by").get(pk=result.movement.pk)
    if result.replayed:
        response["Idempotent-Replayed"] = "true"
        return Status(200, movement)
    return Status(201, movement)


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
    movements = StockMovement.objects.filter(product_id=product.pk).select_related("changed_by")
    return paginate(movements.order_by("-created_at", "-id"), page, page_size)
