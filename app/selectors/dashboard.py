"""Read queries behind the back-office pages: each returns a bounded, ready-to-render list.

Pages must stay fast on large catalogues, so every list here is limited and fetches its
related rows in the same query.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import NamedTuple

from django.contrib.auth import get_user_model
from django.db.models import OuterRef, QuerySet, Subquery
from django.shortcuts import get_object_or_404
from django.utils import timezone

from .. import conf
from ..models import PipelineRun, PriceHistory, Product, Reservation, StockAlert
from .runs import visible_runs

RECENT = 10
PRODUCT_ROWS = 50
CHART_POINTS = 500


def open_alerts(limit: int = 50) -> QuerySet[StockAlert]:
    """Unresolved low-stock alerts, newest first, with the product's current stock.

    The newest ``limit`` are chosen first and only they are joined to their products:
    joined before the limit, PostgreSQL read a product for each of the ~500 alerts its
    incremental sort on ``(opened_at, id)`` looked at (2 ms instead of 0.4 ms with 10,000
    open alerts)."""
    newest = StockAlert.objects.filter(resolved_at__isnull=True).order_by("-opened_at", "-id")
    return (
        StockAlert.objects.filter(pk__in=newest.values("pk")[:limit])
        .select_related("product")
        .order_by("-opened_at", "-id")
    )


def recent_runs(user, limit: int = RECENT) -> QuerySet[PipelineRun]:
    """The latest runs ``user`` may read (``app.selectors.runs``)."""
    # Not their result (the rows do not show it; a result can hold thousands of rows); a
    # run's spec is not in its row (``PipelineRunSpec``).
    return visible_runs(user).defer("result").order_by("-created_at", "-id")[:limit]


def active_runs(user) -> QuerySet[PipelineRun]:
    """Runs not finished yet: the ones the dashboard's progress bars poll for."""
    return (
        visible_runs(user)
        .filter(status__in=[PipelineRun.Status.PENDING, PipelineRun.Status.RUNNING])
        .order_by("-created_at", "-id")
    )


def runs_by_id(user, ids: list[int]) -> QuerySet[PipelineRun]:
    return visible_runs(user).filter(pk__in=ids[:100]).order_by("-created_at", "-id")


def run_progress(run: PipelineRun) -> int:
    """Percent done: by rows when the run counts rows, else by steps; 100 once finished."""
    if run.status in (
        PipelineRun.Status.SUCCEEDED,
        PipelineRun.Status.FAILED,
        PipelineRun.Status.PREVIEWED,
    ):
        return 100
    if run.rows_total:
        return min(100, run.rows_done * 100 // run.rows_total)
    if run.steps_total:
        return min(100, run.steps_done * 100 // run.steps_total)
    return 0


def recent_price_changes(limit: int = RECENT) -> QuerySet[PriceHistory]:
    return PriceHistory.objects.select_related("changed_by").order_by("-changed_at", "-id")[:limit]


def product_by_sku(sku: str) -> Product:
    return get_object_or_404(Product, sku=sku)


def active_reservations(product: Product, limit: int = PRODUCT_ROWS) -> list[Reservation]:
    """The product's holds that still count (active, not past due), soonest to lapse first.
    Empty, without a query, when ``Product.reserved`` (the units of its active holds, moved
    in the transaction of every hold's change) is 0: most products."""
    if not product.reserved:
        return []
    return list(
        product.reservations.filter(status=Reservation.Status.ACTIVE, expires_at__gt=timezone.now())
        .select_related("location", "changed_by")
        .order_by("expires_at", "id")[:limit]
    )


def expiring_reservations(limit: int = RECENT) -> QuerySet[Reservation]:
    """Active holds of any product that lapse within ``STOCKPIPE_RESERVATION_EXPIRING_SOON``,
    soonest first (the dashboard's list: the orders to ship before their stock is freed)."""
    now = timezone.now()
    return (
        Reservation.objects.filter(
            status=Reservation.Status.ACTIVE,
            expires_at__gt=now,
            expires_at__lte=now + timedelta(seconds=conf.reservation_expiring_soon()),
        )
        .select_related("location", "product")
        .order_by("expires_at", "id")[:limit]
    )


def alert_history(product: Product, limit: int = PRODUCT_ROWS) -> QuerySet[StockAlert]:
    return product.stock_alerts.order_by("-opened_at", "-id")[:limit]


@dataclass(frozen=True)
class PricePoint:
    at: datetime
    price: Decimal


def _username() -> Subquery:
    """The name of the row's ``changed_by`` user, looked up per row. Joined instead, the
    user table made PostgreSQL read a long history whole (bitmap scan and sort: 1,000 table
    pages for a 1,000-row product) instead of walking its newest rows backwards on
    ``(product, time, id)`` (500 pages)."""
    users = get_user_model()
    return Subquery(
        users.objects.filter(pk=OuterRef("changed_by_id")).values(users.USERNAME_FIELD)[:1]
    )


class PriceChangeRow(NamedTuple):
    """One price history row as the product page shows it (no model instance: the page
    reads up to ``CHART_POINTS`` of them)."""

    changed_at: datetime
    old_price: Decimal
    new_price: Decimal
    source: str
    changed_by: str | None  # the user's username
    id: int  # with ``changed_at``, the row's place in the history (Omnibus walk goes on there)


def price_history_rows(product: Product, limit: int = CHART_POINTS) -> list[PriceChangeRow]:
    """The product's latest ``limit`` price changes, newest first, in one query: the chart
    draws them all, the list shows the first ``PRODUCT_ROWS``."""
    rows = (
        product.price_history.order_by("-changed_at", "-id")
        .annotate(by=_username())
        .values_list("changed_at", "old_price", "new_price", "source", "by", "id")[:limit]
    )
    return [PriceChangeRow(*row) for row in rows]


def price_series(
    product: Product,
    now: datetime,
    limit: int = CHART_POINTS,
    rows: Sequence[PriceChangeRow] | None = None,
) -> list[PricePoint]:
    """The price over time as a step series: launch (or the oldest shown) price, each change,
    and the current price at ``now``. Only the latest ``limit`` changes are read (``rows``:
    those already read by ``price_history_rows(product, limit)``)."""
    if rows is None:
        rows = price_history_rows(product, limit)
    rows = rows[::-1]
    if not rows:
        return [PricePoint(product.created_at, product.price), PricePoint(now, product.price)]
    first_at = product.created_at if len(rows) < limit else rows[0].changed_at
    points = [PricePoint(min(first_at, rows[0].changed_at), rows[0].old_price)]
    points += [PricePoint(row.changed_at, row.new_price) for row in rows]
    points.append(PricePoint(max(now, rows[-1].changed_at), product.price))
    return points


@dataclass(frozen=True)
class StockSeries:
    """One line of the stock chart: ``points`` are (time, units) steps, oldest first."""

    label: str
    points: list[tuple[datetime, int]]


class LedgerRow(NamedTuple):
    """One stock ledger row as the product page shows it."""

    created_at: datetime
    location: str  # the location's code
    delta: int
    stock_after: int
    reason: str
    source: str
    changed_by: str | None  # the user's username


def ledger_rows(product: Product, limit: int = CHART_POINTS) -> list[LedgerRow]:
    """The product's latest ``limit`` ledger rows, newest first, in one query: the stock
    chart walks them all, the movements list shows the first ``PRODUCT_ROWS``."""
    rows = (
        product.stock_movements.order_by("-created_at", "-id")
        .annotate(by=_username())
        .values_list(
            "created_at", "location__code", "delta", "stock_after", "reason", "source", "by"
        )[:limit]
    )
    return [LedgerRow(*row) for row in rows]


def stock_series(
    product: Product,
    now: datetime,
    limit: int = CHART_POINTS,
    rows: Sequence[LedgerRow] | None = None,
    current: dict[str, int] | None = None,
) -> list[StockSeries]:
    """Stock over time from the ledger: the total (each row's ``stock_after``) and each
    location (walked back from its current level through the latest ``limit`` rows).
    ``rows``: those of ``ledger_rows(product, limit)``; ``current``: the quantity at each
    location's code now (both read here when not given)."""
    if rows is None:
        rows = ledger_rows(product, limit)
    if not rows:
        return []
    if current is None:
        current = dict(product.stock_levels.values_list("location__code", "quantity"))
    per_location: dict[str, list[tuple[datetime, int]]] = {}
    level = dict(current)
    for row in rows:  # newest first: the value after each row
        code = row.location
        per_location.setdefault(code, []).append((row.created_at, level.get(code, 0)))
        level[code] = level.get(code, 0) - row.delta
    newest = rows[0].created_at
    series = [StockSeries("total", [(row.created_at, row.stock_after) for row in reversed(rows)])]
    series[0].points.append((max(now, newest), product.stock))
    for code in sorted(per_location):
        points = list(reversed(per_location[code]))
        points.append((max(now, newest), current.get(code, 0)))
        series.append(StockSeries(code, points))
    return series
