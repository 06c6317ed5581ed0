"""Dashboard and product pages through Django's test client, against real tracked writes."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from app.models import PipelineRun, PriceHistory, StockAlert
from app.services.context import change_context
from tests.factories import ProductFactory
from tests.validation.legacy import legacy_product

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url", ["/", "/products/", "/products/X/", "/dashboard/runs.json", "/pipelines/"]
)
def test_pages_need_login(client, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(f"/accounts/login/?next={url}")


def test_login_page_logs_in_and_lands_on_dashboard(client, user):
    page = client.get("/accounts/login/")
    assert page.status_code == 200 and b'name="password"' in page.content
    response = client.post("/accounts/login/", {"username": "clerk", "password": "pw-for-tests-1"})
    assert response.status_code == 302 and response["Location"] == "/"
    assert client.get("/").status_code == 200


def test_wrong_password_is_refused(client, user):
    response = client.post("/accounts/login/", {"username": "clerk", "password": "nope"})
    assert response.status_code == 200
    assert b"correct username and password" in response.content


def test_logout_needs_post_and_ends_session(logged_in):
    assert logged_in.post("/accounts/logout/").status_code == 302
    assert logged_in.get("/").status_code == 302


def test_dashboard_lists_open_alerts_after_a_stock_drop(logged_in):
    product = ProductFactory(sku="MOU-1", name="Mouse", stock=40, low_stock_threshold=5)
    page = logged_in.get("/").content.decode()
    assert "No product is below its low-stock threshold." in page
    product.stock = 3
    product.save()
    page = logged_in.get("/").content.decode()
    row = re.search(r'<tr data-sku="MOU-1">(.*?)</tr>', page, re.S).group(1)
    assert "Mouse" in row and ">3<" in row and ">5<" in row and "Pending" in row
    assert 'href="/products/MOU-1/"' in row


def test_resolved_alerts_leave_the_dashboard(logged_in):
    product = ProductFactory(sku="KEY-1", stock=2, low_stock_threshold=5)
    assert StockAlert.objects.filter(product=product, resolved_at=None).exists()
    assert 'data-sku="KEY-1"' in logged_in.get("/").content.decode()
    product.stock = 50
    product.save()
    assert 'data-sku="KEY-1"' not in logged_in.get("/").content.decode()


def test_dashboard_shows_recent_price_changes_and_runs(logged_in, user):
    product = ProductFactory(sku="LAP-1", name="Laptop", price=Decimal("999.00"))
    with change_context(user=user, source="api"):
        product.price = Decimal("949.00")
        product.save()
    run = PipelineRun.objects.create(
        name="nightly", spec={}, user=user, status="running", rows_total=200, rows_done=50
    )
    page = logged_in.get("/").content.decode()
    changes = re.search(r'id="price-changes"(.*?)</section>', page, re.S).group(1)
    assert "999.00" in changes and "949.00" in changes
    assert "clerk" in changes and "api" in changes  # who and where
    row = re.search(rf'<tr data-run="{run.pk}" data-status="running">(.*?)</tr>', page, re.S)
    assert 'aria-valuenow="25"' in row.group(1) and "50/200 rows" in row.group(1)


def test_runs_json_reports_progress(logged_in, user):
    running = PipelineRun.objects.create(
        spec={}, user=user, status="running", steps_total=4, steps_done=1
    )
    done = PipelineRun.objects.create(
        spec={}, user=user, status="succeeded", steps_total=4, steps_done=4
    )
    data = logged_in.get("/dashboard/runs.json").json()
    assert [r["id"] for r in data["runs"]] == [running.pk]
    assert data["runs"][0]["progress"] == 25 and data["runs"][0]["finished"] is False
    data = logged_in.get(f"/dashboard/runs.json?ids={running.pk},{done.pk},x").json()
    by_id = {r["id"]: r for r in data["runs"]}
    assert by_id[done.pk]["progress"] == 100 and by_id[done.pk]["finished"] is True


def test_product_page_shows_price_stock_chart_movements_and_alerts(logged_in):
    product = ProductFactory(sku="MON-1", name="Monitor", price=Decimal("300.00"), stock=20)
    for price in ("280.00", "260.00"):
        product.price = Decimal(price)
        product.save()
    product.stock = 2
    product.save()
    page = logged_in.get("/products/MON-1/").content.decode()
    assert "Monitor" in page and "260.00" in page
    # The chart: an SVG step line through launch, two changes and now.
    svg = re.search(r'<svg class="chart price-chart".*?</svg>', page, re.S).group(0)
    points = re.search(r'<polyline class="line" points="([^"]+)"', svg).group(1).split()
    assert len(points) == 1 + 2 * 3
    assert svg.count('class="marker"') == 2
    # Stock movements (initial stock and the drop) and the alert it opened.
    movements = re.search(r'id="movements"(.*?)</section>', page, re.S).group(1)
    assert "+20" in movements and "-18" in movements
    alerts = re.search(r'id="alert-history"(.*?)</section>', page, re.S).group(1)
    assert "open" in alerts and "Pending" in alerts


def test_product_page_shows_the_omnibus_prior_price(logged_in):
    product = ProductFactory(sku="CAB-1", price=Decimal("8.00"))
    PriceHistory.objects.create(
        product=product,
        sku=product.sku,
        name=product.name,
        old_price=Decimal("10.00"),
        new_price=Decimal("8.00"),
        changed_at=timezone.now() - timedelta(days=2),
    )
    page = logged_in.get("/products/CAB-1/").content.decode()
    prior = re.search(r'id="prior-price">(.*?)</span>\s*</div>', page, re.S).group(1)
    assert "<strong>10.00</strong>" in prior and "20.0 %" in prior


def test_product_without_reduction_has_no_prior_price(logged_in):
    ProductFactory(sku="PLAIN-1", price=Decimal("8.00"))
    page = logged_in.get("/products/PLAIN-1/").content.decode()
    assert 'id="prior-price"' not in page
    assert '<polyline class="line"' in page


def test_unknown_product_is_404(logged_in):
    assert logged_in.get("/products/NOPE/").status_code == 404


def test_product_list_searches(logged_in):
    ProductFactory(sku="LAP-1", name="Laptop")
    ProductFactory(sku="MOU-1", name="Mouse")
    page = logged_in.get("/products/?q=lap").content.decode()
    assert "LAP-1" in page and "MOU-1" not in page


def test_dashboard_query_count_is_bounded(logged_in, django_assert_max_num_queries):
    for i in range(15):
        product = ProductFactory(stock=1, low_stock_threshold=5)
        product.price = Decimal("1.00") + i
        product.save()
        PipelineRun.objects.create(spec={}, status="succeeded")
    with django_assert_max_num_queries(8):
        assert logged_in.get("/").status_code == 200


def test_sku_with_slash_and_space_has_a_product_page(logged_in):
    legacy_product("AB/12 X", name="Odd")  # the SKU rule refuses both today
    page = logged_in.get("/products/").content.decode()
    assert 'href="/products/AB/12%20X/"' in page
    assert "Odd" in logged_in.get("/products/AB/12%20X/").content.decode()


def test_run_links_only_for_users_who_may_see_runs(client, user, operator):
    run = PipelineRun.objects.create(spec={}, status="succeeded", user=operator)
    client.force_login(user)
    assert f'href="/pipelines/runs/{run.pk}/"' not in client.get("/").content.decode()
    client.force_login(operator)
    assert f'href="/pipelines/runs/{run.pk}/"' in client.get("/").content.decode()
