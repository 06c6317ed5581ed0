"""The repeated rows of the dashboard and the product page, rendered in Python.

Django's template engine resolves every ``{{ variable }}`` and filter per row through its
generic lookup (dictionary, attribute, index; localisation; escaping): a few microseconds
each. A product with a long ledger showed about 5,000 of them in its stock table alone
(80 ms a page) and the dashboard about 1,000. Here a row is one format string and each value
is formatted once, with exactly what the template filters it replaces produce
(``tests/web/test_rows.py`` compares the two); the templates keep the tables, headers and
everything that is not repeated.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from decimal import Decimal

from django.conf import settings
from django.urls import reverse
from django.utils import formats, timezone
from django.utils.html import conditional_escape, escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.timesince import timesince, timeuntil

from ..models import PriceHistory, Reservation, StockAlert
from ..selectors.dashboard import LedgerRow, PriceChangeRow
from .charts import ChartTable

NONE = "—"


class Formats:
    """Template output of numbers and times, computed without the template engine: the
    current time zone and the thousand-separator setting are read once per page."""

    def __init__(self) -> None:
        self.tz = timezone.get_current_timezone() if settings.USE_TZ else None
        self.plain_ints = not settings.USE_THOUSAND_SEPARATOR

    def number(self, value: int | Decimal) -> str:
        """``{{ value }}``."""
        if self.plain_ints and type(value) is int:
            return str(value)
        return str(formats.localize(value))

    def local(self, value: datetime) -> datetime:
        """The value as templates show it: aware times in the current time zone."""
        if self.tz is not None and timezone.is_aware(value):
            return value.astimezone(self.tz)
        return value

    def minute(self, value: datetime) -> str:
        """``{{ value|date:"Y-m-d H:i" }}``."""
        t = self.local(value)
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}"

    def second(self, value: datetime) -> str:
        """``{{ value|date:"Y-m-d H:i:s" }}``."""
        t = self.local(value)
        return f"{t.year:04d}-{t.month:02d}-{t.day:02d} {t.hour:02d}:{t.minute:02d}:{t.second:02d}"

    def iso(self, value: datetime) -> str:
        """``{{ value|date:"c" }}``."""
        return self.local(value).isoformat()


def _join(rows: Iterable[SafeString]) -> SafeString:
    # conditional_escape leaves the rows (format_html's output) as they are, escapes the rest.
    return mark_safe("\n".join(conditional_escape(row) for row in rows))  # noqa: S308


def _product_link(sku: str, name: str) -> SafeString:
    return format_html('<a href="{}">{}</a>', reverse("product-detail", args=[sku]), name)


# --- product page ---------------------------------------------------------------------------


def price_change_rows(changes: Sequence[PriceChangeRow], fmt: Formats) -> SafeString:
    """The product page's list of price changes (newest first)."""
    return _join(
        format_html(
            '<tr><td>{}</td><td class="num">{}</td><td class="num">{}</td>'
            '<td>{} <span class="muted small">{}</span></td></tr>',
            fmt.minute(c.changed_at),
            fmt.number(c.old_price),
            fmt.number(c.new_price),
            c.changed_by or NONE,
            c.source,
        )
        for c in changes
    )


def movement_rows(moves: Sequence[LedgerRow], fmt: Formats) -> SafeString:
    """The product page's stock movements (newest first)."""
    return _join(
        format_html(
            '<tr><td>{}</td><td>{}</td><td class="num {}">{}{}</td><td class="num">{}</td>'
            '<td>{}</td><td>{} <span class="muted small">{}</span></td></tr>',
            fmt.minute(m.created_at),
            m.location,
            "down" if m.delta < 0 else "up",
            "+" if m.delta > 0 else "",
            fmt.number(m.delta),
            fmt.number(m.stock_after),
            m.reason or NONE,
            m.changed_by or NONE,
            m.source,
        )
        for m in moves
    )


def stock_table_rows(table: ChartTable, fmt: Formats) -> SafeString:
    """The stock chart's table twin: a row per time, a cell per series. Up to 501 rows
    (the times of 500 ledger rows, and now), so built from plain strings: the times are
    digits and separators, the numbers are escaped."""
    cells: dict[int | None, str] = {None: f'<td class="num">{NONE}</td>'}  # values repeat
    out = []
    for at, values in table.rows:
        row = []
        for value in values:
            cell = cells.get(value)
            if cell is None:
                cell = cells[value] = f'<td class="num">{escape(fmt.number(value))}</td>'
            row.append(cell)
        out.append(
            f'<tr><td><time datetime="{fmt.iso(at)}">{fmt.second(at)}</time></td>{"".join(row)}</tr>'
        )
    return mark_safe("\n".join(out))  # noqa: S308 (see above: nothing unescaped)


def active_reservation_rows(holds: Iterable[Reservation], fmt: Formats) -> SafeString:
    """The product page's active holds (``select_related("location", "changed_by")``)."""
    return _join(
        format_html(
            '<tr data-reservation="{}"><td>{} <span class="muted small">#{}</span></td>'
            '<td>{}</td><td class="num">{}</td><td><time datetime="{}">{}</time></td>'
            '<td>{} <span class="muted small">{}</span></td></tr>',
            fmt.number(hold.pk),
            hold.reference or NONE,
            fmt.number(hold.pk),
            (hold.location.code if hold.location else "") or "any",
            fmt.number(hold.quantity),
            fmt.iso(hold.expires_at),
            fmt.minute(hold.expires_at),
            (hold.changed_by.get_username() if hold.changed_by else "") or NONE,
            hold.source,
        )
        for hold in holds
    )


def alert_history_rows(alerts: Iterable[StockAlert], fmt: Formats) -> SafeString:
    """The product page's low-stock episodes (newest first)."""
    return _join(
        format_html(
            '<tr><td>{}</td><td>{}</td><td class="num">{}</td><td class="num">{}</td>'
            '<td><span class="badge delivery-{}">{}</span></td></tr>',
            fmt.minute(alert.opened_at),
            fmt.minute(alert.resolved_at)
            if alert.resolved_at
            else mark_safe('<span class="badge status-running">open</span>'),
            fmt.number(alert.stock),
            fmt.number(alert.threshold),
            alert.delivery_status,
            alert.get_delivery_status_display(),
        )
        for alert in alerts
    )


# --- dashboard ------------------------------------------------------------------------------


def _when(value: datetime, shown: str, fmt: Formats) -> SafeString:
    return format_html(
        '<time datetime="{}" title="{}">{}</time>', fmt.iso(value), fmt.second(value), shown
    )


def open_alert_rows(alerts: Iterable[StockAlert], fmt: Formats, now: datetime) -> SafeString:
    """The dashboard's open low-stock alerts (``select_related("product")``): the product's
    current name and stock while it exists, the alert's own copy after a deletion. Up to 50
    rows on every dashboard: plain strings, every value escaped here (one ``format_html``
    per part cost as much as the rest of the row)."""
    rows = []
    for alert in alerts:
        product = alert.product
        sku = escape(alert.sku)
        if product:
            url = escape(reverse("product-detail", args=[product.sku]))
            who = f'<a href="{url}">{escape(product.name)}</a>'
        else:
            who = escape(alert.name)
        status = escape(alert.delivery_status)
        delivery = f'<span class="badge delivery-{status}">'
        delivery += f"{escape(alert.get_delivery_status_display())}</span>"
        if alert.delivery_status == "pending" and alert.attempts:
            attempts = escape(fmt.number(alert.attempts))
            plural = "" if alert.attempts == 1 else "s"
            delivery += f' <span class="muted small">{attempts} attempt{plural}</span>'
        if alert.last_error:
            error = escape(alert.last_error)
            delivery += f' <span class="muted small" title="{error}">last error</span>'
        stock = escape(fmt.number(product.stock if product else alert.stock))
        ago = escape(f"{timesince(alert.opened_at, now)} ago")
        rows.append(
            f'<tr data-sku="{sku}"><td>{who} <span class="muted small">{sku}</span></td>'
            f'<td class="num low">{stock}</td>'
            f'<td class="num">{escape(fmt.number(alert.threshold))}</td>'
            f'<td><time datetime="{fmt.iso(alert.opened_at)}" title="{fmt.second(alert.opened_at)}">'
            f"{ago}</time></td><td>{delivery}</td></tr>"
        )
    return mark_safe("\n".join(rows))  # noqa: S308 (every value escaped above)


def expiring_reservation_rows(
    holds: Iterable[Reservation], fmt: Formats, now: datetime
) -> SafeString:
    """The dashboard's holds that lapse soon (``select_related("location", "product")``)."""
    return _join(
        format_html(
            '<tr data-reservation="{}" data-sku="{}"><td>{} <span class="muted small">{}</span>'
            '</td><td>{}</td><td>{}</td><td class="num">{}</td><td>{}</td></tr>',
            fmt.number(hold.pk),
            hold.sku,
            _product_link(hold.sku, hold.product.name) if hold.product_id else "",
            hold.sku,
            hold.reference or NONE,
            (hold.location.code if hold.location else "") or "any",
            fmt.number(hold.quantity),
            _when(hold.expires_at, f"in {timeuntil(hold.expires_at, now)}", fmt),
        )
        for hold in holds
    )


def recent_price_change_rows(
    changes: Iterable[PriceHistory], fmt: Formats, now: datetime
) -> SafeString:
    """The dashboard's latest price changes of any product (``select_related("changed_by")``),
    with the name and SKU recorded at the change."""
    return _join(
        format_html(
            '<tr><td>{} <span class="muted small">{}</span></td><td class="num">{}</td>'
            '<td class="num {}">{}</td><td>{}</td><td>{} <span class="muted small">{}</span></td>'
            "</tr>",
            _product_link(change.sku, change.name) if change.product_id else change.name,
            change.sku,
            fmt.number(change.old_price),
            "down" if change.new_price < change.old_price else "up",
            fmt.number(change.new_price),
            _when(change.changed_at, f"{timesince(change.changed_at, now)} ago", fmt),
            (change.changed_by.get_username() if change.changed_by else "") or NONE,
            change.source,
        )
        for change in changes
    )
