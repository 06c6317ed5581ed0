"""Products: list (filters, cursor pagination), get, create, partial update, delete.

Writes go through ``Product.save()``/``delete()``, so price history, the stock ledger,
alerts and the deletion audit are recorded by the tracking core like for any other writer.
"""

from __future__ import annotations

from typing import Annotated

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.errors import HttpError
from pydantic import Field

from ..models import Product
from ..services.omnibus import current_reduction
from .auth import AUTH, require_perm
from .errors import responses
from .schemas import ProductDetailOut, ProductIn, ProductOut, ProductPage, ProductPatch, Sku

# Optional by default, yet not "| None": a query parameter cannot be null, so OpenAPI
# must not offer null.
SearchText = Annotated[
    str, Field(max_length=200, pattern=r"^[^\x00]*$", description="Name contains (any case)")
]
LowStockFlag = Annotated[
    bool, Field(description="true: only products below their threshold; false: only others")
]

router = Router(tags=["products"], auth=AUTH)


@router.get("", response={200: ProductPage, **responses(401, 422)})
def list_products(
    request: HttpRequest,
    sku_prefix: Annotated[Sku, Field(description="Only SKUs starting with this")] = None,
    search: SearchText = None,
    low_stock: LowStockFlag = None,
    after: Annotated[Sku, Field(description="Cursor: the `next_after` of the last page")] = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 50,
):
    """Products ordered by SKU, with keyset (cursor) pagination that stays stable under writes."""
    qs = Product.objects.order_by("sku")
    if sku_prefix:
        qs = qs.filter(sku__startswith=sku_prefix)
    if search:
        qs = qs.filter(name__icontains=search)
    if low_stock is True:
        qs = qs.filter(stock__lt=F("low_stock_threshold"))
    elif low_stock is False:
        qs = qs.filter(stock__gte=F("low_stock_threshold"))
    if after:
        qs = qs.filter(sku__gt=after)
    items = list(qs[: limit + 1])
    next_after = items[limit - 1].sku if len(items) > limit else None
    return {"items": items[:limit], "next_after": next_after}


@router.get("/{sku}", response={200: ProductDetailOut, **responses(401, 404, 422)})
def get_product(request: HttpRequest, sku: Sku):
    product = get_object_or_404(Product, sku=sku)
    reduction = current_reduction(product)
    if reduction is not None:
        product.prior_price = reduction.prior_price
        product.discount_percent = reduction.discount_percent
    return product


@router.post("", response={201: ProductOut, **responses(400, 401, 403, 409, 422)})
def create_product(request: HttpRequest, payload: ProductIn):
    require_perm(request, "app.add_product")
    data = payload.dict(exclude_none=True)
    if Product.objects.filter(sku=payload.sku).exists():
        raise HttpError(409, f"A product with SKU {payload.sku!r} already exists.")
    try:
        with transaction.atomic():
            product = Product.objects.create(**data)
    except IntegrityError as exc:  # created concurrently
        raise HttpError(409, f"A product with SKU {payload.sku!r} already exists.") from exc
    return Status(201, product)


@router.patch("/{sku}", response={200: ProductOut, **responses(400, 401, 403, 404, 422)})
def update_product(request: HttpRequest, payload: ProductPatch, sku: Sku):
    """Change name, price, stock (absolute; use the stock endpoint for moves) or threshold."""
    require_perm(request, "app.change_product")
    changes = payload.dict(exclude_unset=True)
    with transaction.atomic():
        product = get_object_or_404(Product.objects.select_for_update(), sku=sku)
        for name, value in changes.items():
            setattr(product, name, value)
        if changes:
            product.save()
    return product


@router.delete("/{sku}", response={204: None, **responses(401, 403, 404, 422)})
def delete_product(request: HttpRequest, sku: Sku):
    require_perm(request, "app.delete_product")
    with transaction.atomic():
        get_object_or_404(Product.objects.select_for_update(), sku=sku).delete()
    return Status(204, None)
