"""Products: list (filters, cursor pagination), get, create, partial update, delete.

Writes go through ``Product.save()``/``delete()``, so price history, the stock ledger,
alerts and the deletion audit are recorded by the tracking core like for any other writer.
"""

from __future__ import annotations

from typing import Annotated

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Status
from ninja.errors import HttpError
from pydantic import Field

from ..core import converters  # noqa: F401 (registers <anysku:...>)
from ..core.pagination import cursor_page
from ..models import Product
from ..selectors.replica import replica_reads
from ..services import product_cache
from ..services.omnibus import Reduction
from ..services.stock import availability
from .auth import AUTH, BearerToken, require_perm, session
from .errors import responses
from .schemas import (
    ProductDetailOut,
    ProductIn,
    ProductOut,
    ProductPage,
    ProductPatch,
    Sku,
)

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
    replica_reads(request)
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
    return cursor_page(qs, limit, lambda product: product.sku)


def _product_key(request: HttpRequest) -> list[str]:
    return [product_cache.key_for(request.resolver_match.kwargs["sku"])]


# The product's cache entry comes in the same round trip as the token's.
DETAIL_AUTH = [BearerToken(read_ahead=_product_key), session]


# ``{anysku:sku}``: any stored SKU, percent-encoded, "/" and line breaks included (legacy rows).
# This router is mounted after the /products/{sku}/... routers, which therefore match first.
@router.get(
    "/{anysku:sku}", response={200: ProductDetailOut, **responses(401, 404, 422)}, auth=DETAIL_AUTH
)
def get_product(request: HttpRequest, sku: Sku):
    """A product with its Omnibus prior price. Served from the shared cache when there is
    one (see ``app.services.product_cache``): the body is ``ProductDetailOut`` rendered once."""
    # Here, not on top: app.api imports this module to mount its router (an import cycle).
    from . import api  # the NinjaAPI this router is mounted on: its renderer and type

    def render(product: Product, reduction: Reduction | None) -> bytes:
        if reduction is not None:
            product.prior_price = reduction.prior_price
            product.discount_percent = reduction.discount_percent
        product.available, product.locations = availability(product)
        data = ProductDetailOut.model_validate(product).model_dump()
        return api.renderer.render(request, data, response_status=200).encode()

    entry = getattr(request, "cache_entries", {}).get(product_cache.key_for(sku))
    body = product_cache.detail_body(sku, render, entry=entry)
    if body is None:
        raise Http404
    return HttpResponse(body, content_type=api.get_content_type())


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


@router.patch(
    "/{anysku:sku}", response={200: ProductOut, **responses(400, 401, 403, 404, 409, 422)}
)
def update_product(request: HttpRequest, payload: ProductPatch, sku: Sku):
    """Change name, price, stock (absolute; use the stock endpoint for moves) or threshold."""
    require_perm(request, "app.change_product")
    changes = payload.dict(exclude_unset=True)
    try:
        with transaction.atomic():
            product = get_object_or_404(Product.objects.select_for_update(), sku=sku)
            for name, value in changes.items():
                setattr(product, name, value)
            if changes:
                product.save()
    except IntegrityError as exc:  # the default location's level would go below zero
        raise HttpError(
            409, "Stock cannot be set below what the locations other than the default hold."
        ) from exc
    return product


@router.delete("/{anysku:sku}", response={204: None, **responses(401, 403, 404, 422)})
def delete_product(request: HttpRequest, sku: Sku):
    require_perm(request, "app.delete_product")
    with transaction.atomic():
        get_object_or_404(Product.objects.select_for_update(), sku=sku).delete()
    return Status(204, None)
