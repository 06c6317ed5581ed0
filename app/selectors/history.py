"""A product's price changes and stock ledger as the API pages them (``/price-history``,
``/stock-movements``), read from the history indexes alone.

A product's rows are spread over its table (one table page per row: everyone's rows arrive in
time order), so a page of 50 rows read from the table costs 50 table pages and, found by id,
50 primary-key pages besides: on a product no request read before, a hundred reads from disk
(issue 13's deep pages: p50 22-59 ms, p99 80-138 ms). ``pricehistory_product_time`` and
``stockmovement_product_time`` (migration 0016) hold every column a page shows, so the
page's ``OFFSET`` and its rows are one index-only scan of the product's range: a few adjacent
index pages and no table page (on pages the visibility map marks all-visible; a deep page's
rows are old ones, which vacuum has marked).

So the querysets select only those columns (``only``), and read the user and the location a
row names with ``prefetch_related``: one query of those few rows, where a join would be
made for every row the ``OFFSET`` skips. ``HISTORY_PAGE_COLUMNS`` and ``LEDGER_PAGE_COLUMNS``
must stay within the indexes' columns (``tests/api/test_history_pages.py``
checks the plans).
"""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import PriceHistory, StockMovement

# What PriceChangeOut and MovementOut show (the id is always selected).
HISTORY_PAGE_COLUMNS = ("sku", "old_price", "new_price", "changed_at", "changed_by", "source")
LEDGER_PAGE_COLUMNS = (
    "sku",
    "location",
    "delta",
    "stock_after",
    "reason",
    "idempotency_key",
    "created_at",
    "changed_by",
    "source",
)


def price_changes(product_id: int) -> QuerySet[PriceHistory]:
    """The product's price changes, newest first, as the API's pages read them."""
    return (
        PriceHistory.objects.filter(product_id=product_id)
        .only(*HISTORY_PAGE_COLUMNS)
        .prefetch_related("changed_by")
        .order_by("-changed_at", "-id")
    )


def stock_movements(product_id: int) -> QuerySet[StockMovement]:
    """The product's stock ledger, newest first, as the API's pages read it."""
    return (
        StockMovement.objects.filter(product_id=product_id)
        .only(*LEDGER_PAGE_COLUMNS)
        .prefetch_related("changed_by", "location")
        .order_by("-created_at", "-id")
    )
