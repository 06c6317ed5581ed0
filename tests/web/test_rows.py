"""The dashboard's and the product page's repeated rows are rendered by ``app/web/rows.py``
without the template engine (issue 13: the pages' time went to per-variable lookups).

Each presenter must produce what the row templates it replaced rendered from the same rows:
those templates are kept here, verbatim, as the reference, and both render the same data:
names, references and errors that need escaping, users and locations that are missing, a
deleted product, pending deliveries with one and two attempts, in a time zone other than
UTC (and with thousand separators for the formats)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.template import engines
from django.test import override_settings
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from app.models import (
    Location,
    PriceHistory,
    Product,
    Reservation,
    StockAlert,
    StockLevel,
    StockMovement,
)
from app.selectors import dashboard as selectors
from app.web import rows
from app.web.charts import stock_chart_table
from tests.factories import ProductFactory, UserFactory
from tests.validation.legacy import legacy_product

pytestmark = pytest.mark.django_db

# The row markup of dashboard.html and product_detail.html before the rows moved to Python.
OLD_DASHBOARD_ALERTS = """{% for alert in alerts %}
      <tr data-sku="{{ alert.sku }}">
        <td>{% if alert.product %}<a href="{% url 'product-detail' alert.product.sku %}">{{ alert.product.name }}</a>{% else %}{{ alert.name }}{% endif %} <span class="muted small">{{ alert.sku }}</span></td>
        <td class="num low">{% if alert.product %}{{ alert.product.stock }}{% else %}{{ alert.stock }}{% endif %}</td>
        <td class="num">{{ alert.threshold }}</td>
        <td><time datetime="{{ alert.opened_at|date:'c' }}" title="{{ alert.opened_at|date:'Y-m-d H:i:s' }}">{{ alert.opened_at|timesince }} ago</time></td>
        <td><span class="badge delivery-{{ alert.delivery_status }}">{{ alert.get_delivery_status_display }}</span>{% if alert.delivery_status == "pending" and alert.attempts %} <span class="muted small">{{ alert.attempts }} attempt{{ alert.attempts|pluralize }}</span>{% endif %}{% if alert.last_error %} <span class="muted small" title="{{ alert.last_error }}">last error</span>{% endif %}</td>
      </tr>
    {% endfor %}"""
OLD_DASHBOARD_HOLDS = """{% for hold in reservations %}
      <tr data-reservation="{{ hold.pk }}" data-sku="{{ hold.sku }}">
        <td>{% if hold.product_id %}<a href="{% url 'product-detail' hold.sku %}">{{ hold.product.name }}</a>{% endif %} <span class="muted small">{{ hold.sku }}</span></td>
        <td>{{ hold.reference|default:"—" }}</td>
        <td>{{ hold.location.code|default:"any" }}</td>
        <td class="num">{{ hold.quantity }}</td>
        <td><time datetime="{{ hold.expires_at|date:'c' }}" title="{{ hold.expires_at|date:'Y-m-d H:i:s' }}">in {{ hold.expires_at|timeuntil }}</time></td>
      </tr>
    {% endfor %}"""
OLD_DASHBOARD_CHANGES = """{% for change in price_changes %}
      <tr>
        <td>{% if change.product_id %}<a href="{% url 'product-detail' change.sku %}">{{ change.name }}</a>{% else %}{{ change.name }}{% endif %} <span class="muted small">{{ change.sku }}</span></td>
        <td class="num">{{ change.old_price }}</td>
        <td class="num {% if change.new_price < change.old_price %}down{% else %}up{% endif %}">{{ change.new_price }}</td>
        <td><time datetime="{{ change.changed_at|date:'c' }}" title="{{ change.changed_at|date:'Y-m-d H:i:s' }}">{{ change.changed_at|timesince }} ago</time></td>
        <td>{{ change.changed_by.get_username|default:"—" }} <span class="muted small">{{ change.source }}</span></td>
      </tr>
    {% endfor %}"""
OLD_PRODUCT_CHANGES = """{% for change in price_changes %}
        <tr><td>{{ change.changed_at|date:"Y-m-d H:i" }}</td><td class="num">{{ change.old_price }}</td><td class="num">{{ change.new_price }}</td><td>{{ change.changed_by.get_username|default:"—" }} <span class="muted small">{{ change.source }}</span></td></tr>
      {% endfor %}"""
OLD_STOCK_TABLE = """{% for at, values in stock_table.rows %}
        <tr><td><time datetime="{{ at|date:'c' }}">{{ at|date:"Y-m-d H:i:s" }}</time></td>{% for value in values %}<td class="num">{% if value is None %}—{% else %}{{ value }}{% endif %}</td>{% endfor %}</tr>
      {% endfor %}"""
OLD_PRODUCT_HOLDS = """{% for hold in reservations %}
      <tr data-reservation="{{ hold.pk }}"><td>{{ hold.reference|default:"—" }} <span class="muted small">#{{ hold.pk }}</span></td><td>{{ hold.location.code|default:"any" }}</td><td class="num">{{ hold.quantity }}</td><td><time datetime="{{ hold.expires_at|date:'c' }}">{{ hold.expires_at|date:"Y-m-d H:i" }}</time></td><td>{{ hold.changed_by.get_username|default:"—" }} <span class="muted small">{{ hold.source }}</span></td></tr>
    {% endfor %}"""
OLD_MOVEMENTS = """{% for move in movements %}
      <tr><td>{{ move.created_at|date:"Y-m-d H:i" }}</td><td>{{ move.location.code }}</td><td class="num {% if move.delta < 0 %}down{% else %}up{% endif %}">{% if move.delta > 0 %}+{% endif %}{{ move.delta }}</td><td class="num">{{ move.stock_after }}</td><td>{{ move.reason|default:"—" }}</td><td>{{ move.changed_by.get_username|default:"—" }} <span class="muted small">{{ move.source }}</span></td></tr>
    {% endfor %}"""
OLD_ALERT_HISTORY = """{% for alert in alerts %}
      <tr><td>{{ alert.opened_at|date:"Y-m-d H:i" }}</td><td>{% if alert.resolved_at %}{{ alert.resolved_at|date:"Y-m-d H:i" }}{% else %}<span class="badge status-running">open</span>{% endif %}</td><td class="num">{{ alert.stock }}</td><td class="num">{{ alert.threshold }}</td><td><span class="badge delivery-{{ alert.delivery_status }}">{{ alert.get_delivery_status_display }}</span></td></tr>
    {% endfor %}"""

# Away from minute boundaries: "timesince" in the reference and in the presenter (a few
# milliseconds apart) name the same minutes.
AGO = timedelta(hours=2, minutes=5, seconds=30)


def old(template: str, **context) -> str:
    return engines["django"].from_string(template).render(context)


def same_html(html: str) -> str:
    """Markup without the line breaks and indentation between tags."""
    return re.sub(r">\s*\n\s*<", "><", str(html).strip())


@pytest.fixture
def world(db):
    """A product with price changes, ledger rows, holds and alerts, and a deleted one's rows."""
    now = timezone.now()
    clerk = UserFactory(username='clerk <x> & "y"')
    main, _ = Location.objects.get_or_create(code="MAIN", defaults={"name": "Main"})
    north = Location.objects.create(code="NORTH", name="North & co")
    # A SKU today's rule refuses (a link must still be built for it) and a name to escape.
    product = legacy_product(
        "MON/1 X", name='<b>Mon & "itor"</b>', price=Decimal("1234.50"), stock=3
    )
    other = ProductFactory(sku="CAB-1", name="Cable", stock=1)  # opens an alert too
    for i, (old_price, new_price, by, source) in enumerate(
        [
            ("1300.00", "1250.00", clerk, "api"),
            ("1250.00", "1299.99", None, "<csv>"),
            ("1299.99", "1234.50", clerk, ""),
        ]
    ):
        PriceHistory.objects.create(
            product=product, sku=product.sku, name=product.name, old_price=Decimal(old_price),
            new_price=Decimal(new_price), changed_at=now - AGO - timedelta(days=10 - i),
            changed_by=by, source=source,
        )  # fmt: skip
    PriceHistory.objects.create(
        product=None, sku="GONE-1", name="Gone <i>", old_price=Decimal("2.00"),
        new_price=Decimal("1.50"), changed_at=now - AGO, source="csv",
    )  # fmt: skip
    for i, (location, delta, after, reason, by) in enumerate(
        [
            (main, 5, 8, "", clerk),
            (north, -3, 5, "sold <2>", None),
            (main, 0, 5, "count", None),
            (north, 1234567, 1234572, "", clerk),
        ]
    ):
        StockMovement.objects.create(
            product=product, sku=product.sku, location=location, delta=delta, stock_after=after,
            reason=reason, created_at=now - AGO - timedelta(hours=5 - i, microseconds=i),
            changed_by=by, source="api",
        )  # fmt: skip
    StockAlert.objects.filter(product=other).update(
        delivery_status="pending", attempts=1, last_error='refused "<b>"', opened_at=now - AGO
    )
    StockAlert.objects.filter(product=product).update(
        delivery_status="pending", attempts=2, opened_at=now - AGO
    )
    StockAlert.objects.create(
        product=None, sku="GONE-2", name='Gone & "gone"', stock=1, threshold=5,
        opened_at=now - AGO - timedelta(days=1), delivery_status="failed", attempts=3,
    )  # fmt: skip
    StockAlert.objects.create(
        product=product, sku=product.sku, name=product.name, stock=2, threshold=5,
        opened_at=now - AGO - timedelta(days=3), resolved_at=now - timedelta(days=2),
        delivery_status="sent", attempts=1,
    )  # fmt: skip
    for location, reference, by, sku in [
        (north, "order <7>", clerk, product.sku),
        (None, "", None, product.sku),
        (main, "orphan", None, None),
    ]:
        Reservation.objects.create(
            product=product if sku else None, sku=sku or "GONE-3", location=location,
            quantity=2, reference=reference, expires_at=now + AGO, changed_by=by, source="api",
            created_at=now - AGO,
        )  # fmt: skip
    # The counters app.services.reservations moves with every hold (written by hand here):
    # the page reads the holds only of a product that has some.
    Product.objects.filter(pk=product.pk).update(reserved=4)
    StockLevel.objects.filter(product=product, location=north).update(reserved=2)
    product.refresh_from_db()
    return product


@pytest.mark.parametrize("zone", ["UTC", "Asia/Kathmandu", "America/St_Johns"])
@pytest.mark.parametrize("grouping", [False, True])
def test_formats_match_the_template_filters(zone, grouping):
    moments = [
        datetime(2026, 12, 5, 3, 4, 5, 123456, tzinfo=UTC),
        datetime(2027, 1, 1, 0, 0, tzinfo=UTC),
        timezone.now(),
    ]
    numbers = [0, 7, -18, 1234567, Decimal("1234.50"), Decimal("-0.10"), Decimal("9.5")]
    with override_settings(USE_THOUSAND_SEPARATOR=grouping), timezone.override(zone):
        fmt = rows.Formats()
        for n in numbers:
            assert fmt.number(n) == old("{{ n }}", n=n), n
        for t in moments:
            assert fmt.minute(t) == old('{{ t|date:"Y-m-d H:i" }}', t=t)
            assert fmt.second(t) == old('{{ t|date:"Y-m-d H:i:s" }}', t=t)
            assert fmt.iso(t) == old("{{ t|date:'c' }}", t=t)
        # The cases differ: grouping and the zone are applied.
        assert fmt.number(1234567) == ("1,234,567" if grouping else "1234567")
        assert (fmt.minute(moments[1]) == "2027-01-01 00:00") == (zone == "UTC")


@pytest.mark.parametrize("zone", ["UTC", "America/St_Johns"])
def test_product_page_rows_match_the_templates_they_replace(world, zone):
    product = world
    with timezone.override(zone):
        now, fmt = timezone.now(), rows.Formats()
        history = selectors.price_history_rows(product)[: selectors.PRODUCT_ROWS]
        ledger = selectors.ledger_rows(product)[: selectors.PRODUCT_ROWS]
        holds = list(selectors.active_reservations(product))
        alerts = list(selectors.alert_history(product))
        table = stock_chart_table(selectors.stock_series(product, now))
        old_changes = product.price_history.select_related("changed_by").order_by(
            "-changed_at", "-id"
        )
        old_moves = product.stock_movements.select_related("changed_by", "location").order_by(
            "-created_at", "-id"
        )
        pairs = [
            (rows.price_change_rows(history, fmt), old(OLD_PRODUCT_CHANGES, price_changes=old_changes)),
            (rows.movement_rows(ledger, fmt), old(OLD_MOVEMENTS, movements=old_moves)),
            (rows.stock_table_rows(table, fmt), old(OLD_STOCK_TABLE, stock_table=table)),
            (rows.active_reservation_rows(holds, fmt), old(OLD_PRODUCT_HOLDS, reservations=holds)),
            (rows.alert_history_rows(alerts, fmt), old(OLD_ALERT_HISTORY, alerts=alerts)),
        ]  # fmt: skip
    assert (len(history), len(ledger), len(holds), len(alerts)) == (3, 5, 2, 2)
    assert len(table.rows) == 6 and table.labels == ["total", "MAIN", "NORTH"]
    for new, reference in pairs:
        assert same_html(new) == same_html(reference)
    html = "".join(str(new) for new, _ in pairs)
    assert "clerk &lt;x&gt; &amp; &quot;y&quot;" in html and "&lt;csv&gt;" in html
    assert "sold &lt;2&gt;" in html and "order &lt;7&gt;" in html and "<td>any</td>" in html


@pytest.mark.parametrize("zone", ["UTC", "America/St_Johns"])
def test_dashboard_rows_match_the_templates_they_replace(world, zone):
    with timezone.override(zone):
        fmt = rows.Formats()
        alerts = list(selectors.open_alerts())
        holds = list(selectors.expiring_reservations())
        changes = list(selectors.recent_price_changes())
        now = timezone.now()
        pairs = [
            (rows.open_alert_rows(alerts, fmt, now), old(OLD_DASHBOARD_ALERTS, alerts=alerts)),
            (rows.expiring_reservation_rows(holds, fmt, now), old(OLD_DASHBOARD_HOLDS, reservations=holds)),
            (rows.recent_price_change_rows(changes, fmt, now), old(OLD_DASHBOARD_CHANGES, price_changes=changes)),
        ]  # fmt: skip
    assert (len(alerts), len(holds), len(changes)) == (3, 3, 4)
    for new, reference in pairs:
        assert same_html(new) == same_html(reference)
    html = "".join(str(new) for new, _ in pairs)
    assert 'href="/products/MON/1%20X/"' in html and "2 attempts" in html and "1 attempt<" in html
    assert 'title="refused &quot;&lt;b&gt;&quot;"' in html and "Gone &amp; &quot;gone&quot;" in html
    assert "2\xa0hours, 5\xa0minutes ago" in html and "in 2\xa0hours, 5\xa0minutes" in html


def test_product_page_reads_history_and_ledger_once(logged_in, world):
    """Chart, list and Omnibus walk share one read of the price history, chart and list one
    of the ledger, with the users' names looked up per row; the levels and the units held
    (per location and in all) are one query."""
    with CaptureQueriesContext(connection) as captured:
        page = logged_in.get("/products/MON/1%20X/")
    assert page.status_code == 200
    queries = [q["sql"] for q in captured.captured_queries]

    def reading(table: str) -> int:
        return sum(sql.count(f'FROM "{table}"') > 0 for sql in queries)

    assert reading("app_pricehistory") == 1  # the page's rows serve the Omnibus walk too
    assert reading("app_stockmovement") == 1 and reading("app_stocklevel") == 1
    # The levels' query and the list of active holds (the availability was a query more).
    assert reading("app_reservation") == 2
    assert len(queries) <= 10  # 12 before
    # No join to the users: with one, PostgreSQL read a long history whole (bitmap scan and
    # sort) instead of its newest rows backwards on (product, time, id).
    histories = [
        sql for sql in queries if 'FROM "app_pricehistory"' in sql or "stockmovement" in sql
    ]
    assert histories and not any('JOIN "auth_user"' in sql for sql in histories)
    html = page.content.decode()
    assert html.count('<circle class="marker"') == 3 and "Price changes (3)" in html
    assert "Stock over time as a table (6 points)" in html


def test_product_page_reads_no_holds_of_a_product_without_any(logged_in, world):
    """``Product.reserved`` is 0: no hold to list or to count, so neither the list of holds
    nor the levels' sums of held units is read (two reads of the holds before)."""
    assert Product.objects.get(sku="CAB-1").reserved == 0
    with CaptureQueriesContext(connection) as captured:
        page = logged_in.get("/products/CAB-1/")
    assert page.status_code == 200
    assert not any("app_reservation" in q["sql"] for q in captured.captured_queries)
    html = page.content.decode()
    assert "No stock is reserved." in html and "1 available (not reserved)" in html
