"""A price chart rendered on the server as inline SVG: no JavaScript, no build step.

Prices are a step function (a price holds until the next change), so the line moves
horizontally to each change and then vertically to the new price.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from itertools import pairwise

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

from ..selectors.dashboard import PricePoint, StockSeries

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 16, 32
GRID_LINES = 4
MAX_MARKERS = 120


def _date_label(at: datetime, span_seconds: float) -> str:
    return at.strftime("%H:%M" if span_seconds < 2 * 86400 else "%d %b %Y")


def price_chart_svg(points: Sequence[PricePoint]) -> SafeString:
    """An SVG step chart of ``points`` (oldest first), with price and date axes."""
    if not points:
        return SafeString("")
    t0, t1 = points[0].at, points[-1].at
    span = max((t1 - t0).total_seconds(), 1.0)
    prices = [p.price for p in points]
    low, high = min(prices), max(prices)
    pad = (high - low) * Decimal("0.1") or max(high * Decimal("0.1"), Decimal(1))
    low, high = max(low - pad, Decimal(0)), high + pad
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + (at - t0).total_seconds() / span * plot_w

    def y(price: Decimal) -> float:
        return TOP + float((high - price) / (high - low)) * plot_h

    coords: list[tuple[float, float]] = [(x(points[0].at), y(points[0].price))]
    for prev, point in pairwise(points):
        coords.append((x(point.at), y(prev.price)))
        coords.append((x(point.at), y(point.price)))
    line = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
    base = TOP + plot_h
    area = f"M{coords[0][0]:.1f},{base} L" + " L".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
    area += f" L{coords[-1][0]:.1f},{base} Z"

    grid = []
    for i in range(GRID_LINES + 1):
        value = low + (high - low) * i / GRID_LINES
        gy = y(value)
        grid.append((LEFT, f"{gy:.1f}", WIDTH - RIGHT, LEFT - 8, f"{gy + 4:.1f}", f"{value:.2f}"))
    ticks = []
    for i in range(4):
        at = t0 + (t1 - t0) * i / 3
        anchor = ("start", "middle", "middle", "end")[i]
        ticks.append((f"{x(at):.1f}", HEIGHT - 10, anchor, _date_label(at, span)))
    markers = [
        (f"{x(p.at):.1f}", f"{y(p.price):.1f}", p.at.strftime("%Y-%m-%d %H:%M"), p.price)
        for p in points[1:-1][-MAX_MARKERS:]
    ]
    return format_html(
        '<svg class="chart price-chart" viewBox="0 0 {w} {h}" role="img" '
        'aria-label="Price history from {start} to {end}" xmlns="http://www.w3.org/2000/svg">'
        "{grid}{ticks}"
        '<path class="area" d="{area}"/>'
        '<polyline class="line" points="{line}"/>'
        "{markers}</svg>",
        w=WIDTH,
        h=HEIGHT,
        start=t0.strftime("%Y-%m-%d"),
        end=t1.strftime("%Y-%m-%d"),
        grid=format_html_join(
            "",
            '<line class="grid" x1="{0}" y1="{1}" x2="{2}" y2="{1}"/>'
            '<text class="axis" x="{3}" y="{4}" text-anchor="end">{5}</text>',
            grid,
        ),
        ticks=format_html_join(
            "", '<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>', ticks
        ),
        area=area,
        line=line,
        markers=format_html_join(
            "",
            '<circle class="marker" cx="{}" cy="{}" r="3"><title>{}: {}</title></circle>',
            markers,
        ),
    )


def stock_chart_svg(series: Sequence[StockSeries]) -> SafeString:
    """An SVG step chart of stock over time: one line per series (the total first, then
    each location), with a legend; units on the vertical axis."""
    if not series:
        return SafeString("")
    times = [at for line in series for at, _ in line.points]
    t0, t1 = min(times), max(times)
    span = max((t1 - t0).total_seconds(), 1.0)
    high = max(max(value for _, value in line.points) for line in series) or 1
    high = high + max(high // 10, 1)
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(at: datetime) -> float:
        return LEFT + (at - t0).total_seconds() / span * plot_w

    def y(value: int) -> float:
        return TOP + (high - value) / high * plot_h

    lines = []
    for i, line in enumerate(series):
        coords = [(x(line.points[0][0]), y(line.points[0][1]))]
        for (_, before), (at, value) in pairwise(line.points):
            coords.append((x(at), y(before)))
            coords.append((x(at), y(value)))
        points = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        legend_y = TOP + 12 + 14 * i
        values = " ".join(str(value) for _, value in line.points)
        lines.append(
            (i, line.label, points, WIDTH - RIGHT - 120, legend_y, line.points[-1][1], values)
        )
    grid = []
    for i in range(GRID_LINES + 1):
        value = high * i // GRID_LINES
        gy = y(value)
        grid.append((LEFT, f"{gy:.1f}", WIDTH - RIGHT, LEFT - 8, f"{gy + 4:.1f}", value))
    ticks = []
    for i in range(4):
        at = t0 + (t1 - t0) * i / 3
        anchor = ("start", "middle", "middle", "end")[i]
        ticks.append((f"{x(at):.1f}", HEIGHT - 10, anchor, _date_label(at, span)))
    return format_html(
        '<svg class="chart stock-chart" viewBox="0 0 {w} {h}" role="img" '
        'aria-label="Stock over time, total and per location" '
        'xmlns="http://www.w3.org/2000/svg">{grid}{ticks}{lines}</svg>',
        w=WIDTH,
        h=HEIGHT,
        grid=format_html_join(
            "",
            '<line class="grid" x1="{0}" y1="{1}" x2="{2}" y2="{1}"/>'
            '<text class="axis" x="{3}" y="{4}" text-anchor="end">{5}</text>',
            grid,
        ),
        ticks=format_html_join(
            "", '<text class="axis" x="{}" y="{}" text-anchor="{}">{}</text>', ticks
        ),
        lines=format_html_join(
            "",
            '<g class="series series-{0}" data-series="{1}" data-values="{6}">'
            '<polyline class="line" points="{2}"/>'
            '<text class="axis legend" x="{3}" y="{4}">{1}: {5}</text></g>',
            lines,
        ),
    )


@dataclass(frozen=True)
class ChartTable:
    """A chart's data as a table (the accessible twin of the SVG): one row per time, the
    value of each series then (None before the series' first point)."""

    labels: list[str]
    rows: list[tuple[datetime, list[int | None]]]


def stock_chart_table(series: Sequence[StockSeries]) -> ChartTable | None:
    """The stock chart's series as a table: a row per distinct time, each series' value
    after everything that happened at that time."""
    if not series:
        return None
    times = sorted({at for line in series for at, _ in line.points})
    rows: list[tuple[datetime, list[int | None]]] = [(at, []) for at in times]
    for line in series:
        points, current, i = line.points, None, 0
        for at, values in rows:
            while i < len(points) and points[i][0] <= at:
                current = points[i][1]
                i += 1
            values.append(current)
    return ChartTable([line.label for line in series], rows)
