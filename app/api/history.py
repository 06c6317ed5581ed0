"""Price history of a product and its price at a point in time.

History belongs to the product, not to the SKU: the SKU names the current product and its
rows are read by the product's id. A product deleted and created again under the same SKU
starts a history of its own; the deleted product's rows keep their SKU (and lose their
product link), readable in the admin and next to its snapshot in the deletion audit
(``GET /api/audit/deletions``).
"""

from __future__ import annotations

from datetime import UTC, datetime

from django.http import HttpRequest
from django.utils import timezone
from ninja import Router
from ninja.errors import HttpError, ValidationError

from ..models import PriceHistory, Product
from ..selectors.history import price_changes
from ..selectors.replica import replica_reads
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
    """The current product's price changes, newest first."""
    replica_reads(request)
    product = _product(sku)
    return paginate(price_changes(product.pk), page, page_size)


@router.get("/{sku}/price-at", response={200: PriceAtOut, **responses(401, 404, 422)})
def price_at(request: HttpRequest, at: datetime, sku: Sku):
    """The price the product had at ``at`` (ISO 8601; without an offset it means UTC)."""
    at = _aware(at)
    product = _product(sku)
    if product.created_at > at:
        raise HttpError(404, f"Product {sku!r} did not exist at {at.isoformat()}.")
    history = PriceHistory.objects.filter(product_id=product.pk)
    last = history.filter(changed_at__lte=at).order_by("-changed_at", "-id").first()
    if last is not None:
        return {"sku": sku, "at": at, "price": last.new_price, "changed_at": last.changed_at}
    nxt = history.filter(changed_at__gt=at).order_by("changed_at", "id").first()
    if nxt is not None:
        return {"sku": sku, "at": at, "price": nxt.old_price, "changed_at": None}
    return {"sku": sku, "at": at, "price": product.price, "changed_at": None}


def _product(sku: str) -> Product:
    """The product that has ``sku`` now (its history is read by its id), else 404."""
    product = Product.objects.filter(sku=sku).only("pk", "price", "created_at").first()
    if product is None:
        raise HttpError(404, f"No product {sku!r}.")
    return product


def _aware(at: datetime) -> datetime:
    if timezone.is_naive(at):
        at = at.replace(tzinfo=UTC)
    try:
        return at.astimezone(UTC)
    except OverflowError:
        raise ValidationError([{"loc": ["query", "at"], "msg": "Date is out of range."}]) from None
