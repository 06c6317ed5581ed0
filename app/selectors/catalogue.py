"""The back office's product list: filters, a sort, keyset (cursor) pages both ways, totals.

A page is ``ORDER BY <column>, id LIMIT n+1`` after the cursor's ``(value, id)``, compared
as a row value (``(price, id) > (%s, %s)``), which PostgreSQL answers from the
``(column, id)`` indexes (migration 0007) without reading the rows before the cursor, so a
deep page costs what the first one does. SKU is unique: its sort is by SKU alone.

Cursors are opaque to the browser: the sort, the last value and the id, base64url-encoded
JSON. A cursor of another sort, or one that does not decode, is a bad parameter.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db.models import Count, DecimalField, F, Q, QuerySet, Sum
from django.db.models.fields.tuple_lookups import (  # row-value comparison (Django 5.2)
    Tuple,
    TupleGreaterThan,
    TupleLessThan,
)

from ..core.domain import label_problem, sku_ref_problem
from ..core.pagination import cursor_page
from ..models import Product

PAGE_SIZE = 50
# sort name -> (column, type of its cursor value)
SORTS: dict[str, tuple[str, type]] = {
    "sku": ("sku", str),
    "name": ("name", str),
    "price": ("price", Decimal),
    "stock": ("stock", int),
    "updated": ("updated_at", datetime),
}
SORT_CHOICES = [*SORTS, *(f"-{name}" for name in SORTS)]


class InvalidListParameter(ValueError):
    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class ProductQuery:
    """What the list shows: ``q`` (SKU or name contains), ``sku_prefix``, ``low_stock``
    (below threshold), ``sort`` (a ``SORT_CHOICES`` entry) and at most one cursor."""

    q: str = ""
    sku_prefix: str = ""
    low_stock: bool = False
    sort: str = "sku"
    after: str = ""
    before: str = ""

    def filter_params(self) -> dict[str, str]:
        """The filters and sort as query parameters (for links and export forms)."""
        params = {"q": self.q, "sku_prefix": self.sku_prefix, "sort": self.sort}
        if self.low_stock:
            params["low_stock"] = "1"
        return {k: v for k, v in params.items() if v and not (k == "sort" and v == "sku")}


def parse_query(params: Any) -> ProductQuery:
    """A ``ProductQuery`` from request parameters; ``InvalidListParameter`` names a bad one."""
    q = (params.get("q") or "").strip()
    prefix = params.get("sku_prefix") or ""
    if q and label_problem(q):
        raise InvalidListParameter("q", f"q: {label_problem(q)}.")
    if prefix and sku_ref_problem(prefix):
        raise InvalidListParameter("sku_prefix", f"sku_prefix: {sku_ref_problem(prefix)}.")
    sort = params.get("sort") or "sku"
    if sort not in SORT_CHOICES:
        raise InvalidListParameter("sort", f"sort: must be one of {', '.join(SORT_CHOICES)}.")
    low = params.get("low_stock") or ""
    if low not in ("", "0", "1", "true", "false", "on"):
        raise InvalidListParameter("low_stock", "low_stock: must be 1 or 0.")
    after, before = params.get("after") or "", params.get("before") or ""
    if after and before:
        raise InvalidListParameter("before", "before: give after or before, not both.")
    query = ProductQuery(q, prefix, low in ("1", "true", "on"), sort, after, before)
    for name in ("after", "before"):
        if getattr(query, name):
            _decode(query, name)  # validated now, so the error names the parameter
    return query


def filtered_products(query: ProductQuery) -> QuerySet[Product]:
    products = Product.objects.all()
    if query.sku_prefix:
        products = products.filter(sku__startswith=query.sku_prefix)
    if query.q:
        products = products.filter(Q(sku__icontains=query.q) | Q(name__icontains=query.q))
    if query.low_stock:
        products = products.filter(stock__lt=F("low_stock_threshold"))
    return products


@dataclass(frozen=True)
class ProductPage:
    items: list[Product]
    next_cursor: str | None  # pass as ``after``
    prev_cursor: str | None  # pass as ``before``


def _columns(sort: str) -> tuple[str, bool, list[str]]:
    name = sort.lstrip("-")
    column = SORTS[name][0]
    keys = [column] if column == "sku" else [column, "id"]
    return name, sort.startswith("-"), keys


def _encode(query: ProductQuery, product: Product) -> str:
    name, _, keys = _columns(query.sort)
    value = getattr(product, keys[0])
    raw = [name, value.isoformat() if isinstance(value, datetime) else str(value)]
    if len(keys) == 2:
        raw.append(product.pk)
    text = json.dumps(raw, separators=(",", ":"), ensure_ascii=False)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(query: ProductQuery, param: str) -> tuple:
    name, _, keys = _columns(query.sort)
    text = getattr(query, param)
    try:
        raw = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        kind = SORTS[name][1]
        if not isinstance(raw, list) or len(raw) != len(keys) + 1 or raw[0] != name:
            raise ValueError
        value = datetime.fromisoformat(raw[1]) if kind is datetime else kind(raw[1])
        if kind is Decimal and not value.is_finite():
            raise ValueError
        values = (value, int(raw[2])) if len(keys) == 2 else (value,)
    except (ValueError, TypeError, InvalidOperation, binascii.Error, UnicodeDecodeError):
        raise InvalidListParameter(
            param, f"{param}: not a cursor of this list (sorted by {query.sort})."
        ) from None
    return values


def _after(keys: list[str], values: tuple, *, greater: bool) -> Q | Any:
    if len(keys) == 1:
        return Q(**{f"{keys[0]}__{'gt' if greater else 'lt'}": values[0]})
    lookup = TupleGreaterThan if greater else TupleLessThan
    return lookup(Tuple(*(F(k) for k in keys)), values)


def product_page(query: ProductQuery, limit: int = PAGE_SIZE) -> ProductPage:
    """One page of the filtered, sorted list, with the cursors of its neighbours."""
    _, descending, keys = _columns(query.sort)
    products = filtered_products(query)
    backwards = bool(query.before)
    # Walking backwards reads the preceding rows in reverse order, then flips them.
    reverse = descending != backwards
    ordered = products.order_by(*(f"-{k}" if reverse else k for k in keys))
    cursor = query.before or query.after
    if cursor:
        values = _decode(query, "before" if backwards else "after")
        ordered = ordered.filter(_after(keys, values, greater=not reverse))
    page = cursor_page(ordered, limit, lambda product: _encode(query, product))
    items = page["items"]
    more = page["next_after"] is not None
    if backwards and not more:  # back at the start: the first page, full
        return product_page(replace(query, before=""), limit)
    if backwards:
        items.reverse()
        prev_cursor = _encode(query, items[0]) if more else None
        next_cursor = _encode(query, items[-1]) if items else None
    else:
        next_cursor = page["next_after"]
        prev_cursor = _encode(query, items[0]) if cursor and items else None
    return ProductPage(items, next_cursor, prev_cursor)


def product_totals(query: ProductQuery) -> dict[str, Any]:
    """Count, stock units and stock value (price x stock) of the filtered products.

    One aggregate over the filtered set: on a large catalogue it reads every row of it
    (about 150-250 ms for 1,000,000 products), so the page fetches it separately.
    """
    totals = filtered_products(query).aggregate(
        count=Count("*"),
        units=Sum("stock"),
        value=Sum(
            F("price") * F("stock"), output_field=DecimalField(max_digits=30, decimal_places=2)
        ),
    )
    return {
        "count": totals["count"] or 0,
        "units": totals["units"] or 0,
        # SQLite sums as a float: two places, like PostgreSQL's numeric.
        "value": Decimal(totals["value"] or 0).quantize(Decimal("0.01")),
    }
