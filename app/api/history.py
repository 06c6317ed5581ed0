"""Price history of a product and its price at a point in time.

History is looked up by SKU (rows keep the SKU when the product is deleted), so the
history of a deleted product stays readable.
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router
from ninja.errors import HttpError, ValidationError

from ..models import PriceHistory, Product
from .auth import AUTH
from .errors import responses
from .schemas import PageNumber, PageSize, PriceAtOut, PriceChangePage, Sku, paginate

router = Router(tags=["price history"], auth=AUTH)


@router.get("/{sku}/price-history", response={200: PriceChangePage, **responses(401, 404, 422)})
def price_history(
    request: HttpRequest,
    sku: Sku,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """Price changes, newest first."""
    changes = PriceHistory.objects.filter(sku=sku).select_related("changed_by")
    result = paginate(changes.order_by("-changed_at", "-id"), page, page_size)
    if not result["count"] and not Product.objects.filter(sku=sku).exists():
        raise HttpError(404, f"No product {sku!r}.")
    return result


@router.get("/{sku}/price-at", response={200: PriceAtOut, **responses(401, 404, 422)})
def price_at(request: HttpRequest, at: datetime, sku: Sku):
    """The price the product had at ``at`` (ISO 8601; without an offset it means UTC)."""
    at = _aware(at)
    history = PriceHistory.objects.filter(sku=sku)
    last = history.filter(changed_at__lte=at).order_by("-changed_at", "-id").first()
    if last is not None:
        return {"sku": sku, "at": at, "price": last.new_price, "changed_at": last.changed_at}
    product = Product.objects.filter(sku=sku).first()
    if product is not None and product.created_at > at:
        raise HttpError(404, f"Product {sku!r} did not exist at {at.isoformat()}.")
    nxt = history.filter(changed_at__gt=at).order_by("changed_at", "id").first()
    if nxt is not None:
        return {"sku": sku, "at": at, "price": nxt.old_price, "changed_at": None}
    if product is None:
        raise HttpError(404, f"No product {sku!r}.")
    return {"sku": sku, "at": at, "price": product.price, "changed_at": None}


def _aware(at: datetime) -> datetime:
    if timezone.is_naive(at):
        at = at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValidationError([{"loc": ["query", "at"], "msg": "Date is out of range."}]) from None
