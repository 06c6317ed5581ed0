"""The back office in a real browser: login, dashboard alerts, live progress, price chart."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from app.models import PipelineRun, PriceHistory
from tests.browser.conftest import coloured_pixels, log_in
from tests.factories import ProductFactory

pytestmark = pytest.mark.browser

ACCENT = (0x24, 0x56, 0xD6)  # the chart line colour (--accent in app.css)


def test_login_is_required_and_works(page, staff_user, shoot):
    page.goto("/")
    page.wait_for_url("**/accounts/login/?next=/")
    page.fill("#id_username", staff_user.username)
    page.fill("#id_password", "wrong password")
    page.click("button[type=submit]")
    assert "correct username and password" in page.text_content(".error")
    shoot(page, "login-error")
    log_in(page, staff_user)
    assert page.text_content("h1") == "Dashboard"
    assert page.text_content(".who") == staff_user.username


def test_alert_appears_on_dashboard_after_a_stock_drop_in_the_admin(page, staff_user, shoot):
    product = ProductFactory(sku="MOU-1", name="Mouse", stock=40, low_stock_threshold=5)
    log_in(page, staff_user)
    assert page.locator('#alerts tr[data-sku="MOU-1"]').count() == 0
    page.goto(f"/admin/app/product/{product.pk}/change/")
    page.fill("#id_stock", "3")
    page.click("input[name=_save]")
    page.wait_for_url("**/admin/app/product/")
    page.goto("/")
    row = page.locator('#alerts tr[data-sku="MOU-1"]')
    row.wait_for()
    cells = row.locator("td").all_text_contents()
    assert cells[0].startswith("Mouse") and cells[1] == "3" and cells[2] == "5"
    assert cells[4].startswith("Pending")
    shoot(page, "dashboard-alert")
    row.locator("a").click()
    page.wait_for_url("**/products/MOU-1/")
    assert page.text_content("#stock .value").strip() == "3"
    latest = page.locator("#movements tbody tr").first.locator("td")
    assert latest.nth(1).inner_text() == "MAIN" and latest.nth(2).inner_text() == "-37"
    assert "admin" in page.locator("#movements tbody tr").first.inner_text()


def test_running_pipeline_progress_bar_updates_live(page, staff_user, shoot):
    run = PipelineRun.objects.create(
        name="nightly import", spec={}, status="running", rows_total=400, rows_done=100
    )
    log_in(page, staff_user)
    bar = page.locator(f'tr[data-run="{run.pk}"] .progress .bar')
    assert bar.evaluate("el => el.style.width") == "25%"  # set by the script (CSP: no inline style)
    shoot(page, "progress-25")
    PipelineRun.objects.filter(pk=run.pk).update(rows_done=300)
    page.wait_for_function(
        "id => document.querySelector(`tr[data-run='${id}'] .bar`).style.width === '75%'",
        arg=run.pk,
    )
    assert page.text_content(f'tr[data-run="{run.pk}"] [data-role=counts]') == "300/400 rows"
    PipelineRun.objects.filter(pk=run.pk).update(status="succeeded", rows_done=400)
    page.wait_for_function(
        "id => document.querySelector(`tr[data-run='${id}']`).dataset.status === 'succeeded'",
        arg=run.pk,
    )
    assert bar.get_attribute("style") == "width: 100%;"
    shoot(page, "progress-done")


def test_price_chart_renders(page, staff_user, shoot):
    now = timezone.now()
    product = ProductFactory(sku="LAP-1", name="Laptop", price=Decimal("899.00"))
    prices = ["1099.00", "999.00", "1049.00", "949.00", "899.00"]
    PriceHistory.objects.bulk_create(
        PriceHistory(
            product=product,
            sku=product.sku,
            name=product.name,
            old_price=Decimal(old),
            new_price=Decimal(new),
            changed_at=now - timedelta(days=days),
        )
        for old, new, days in zip(prices[:-1], prices[1:], [60, 40, 25, 10], strict=True)
    )
    log_in(page, staff_user, next_url="/products/LAP-1/")
    chart = page.locator("svg.price-chart")
    chart.wait_for()
    shoot(page, "product-chart")
    points = chart.locator("polyline.line").get_attribute("points").split()
    assert len(points) == 1 + 2 * 5  # launch + (across, down/up) per change and to now
    box = chart.bounding_box()
    assert box["width"] > 600 and box["height"] > 150
    line_box = page.evaluate("document.querySelector('svg.price-chart polyline').getBBox().height")
    assert line_box > 50  # the line really moves with the price
    assert chart.locator("circle.marker").count() == 4
    assert coloured_pixels(page, chart.screenshot(), ACCENT) > 500
    # Omnibus: the stepped reduction 1049 -> 949 (day 25) -> 899 (day 10) is anchored at
    # day 25; the lowest price of the 30 days before it is 999 (in effect until day 40).
    assert page.text_content("#prior-price strong") == "999.00"
