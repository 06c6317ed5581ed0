"""The product list in a real browser: sort, filter, page forward, totals, download an export."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from openpyxl import load_workbook

from app.models import Product
from tests.browser.conftest import log_in
from tests.factories import UserFactory

pytestmark = pytest.mark.browser


@pytest.fixture
def clerk(transactional_db):
    user = UserFactory(username="clerk")
    user.user_permissions.add(Permission.objects.get(codename="view_product"))
    return user


def test_sort_filter_page_and_export(page, clerk, shoot, tmp_path):
    now = timezone.now()
    Product.objects.bulk_create(
        [
            Product(
                sku=f"SKU-{i:03d}",
                name=f"Item {i}" if i != 7 else "=HYPERLINK(1)",
                price=Decimal(i) + Decimal("0.50"),
                stock=i % 10,
                low_stock_threshold=5,
                created_at=now,
                updated_at=now,
            )
            for i in range(120)
        ]
    )
    log_in(page, clerk, next_url="/products/")
    rows = page.locator("#products tbody tr")
    assert rows.count() == 50 and rows.first.get_attribute("data-sku") == "SKU-000"
    page.wait_for_selector("#totals[data-loaded=true]")
    assert page.text_content('[data-total="count"]').replace(",", "") == "120"

    # Sort by price, then descending (the header link toggles).
    page.click('th a[data-sort="price"]')
    page.wait_for_url("**sort=price")
    page.click('th a[data-sort="price"]')
    page.wait_for_url("**sort=-price")
    assert rows.first.get_attribute("data-sku") == "SKU-119"
    assert page.get_attribute('th a[data-sort="price"]', "aria-sort") == "descending"

    # Filter: low stock only (stock 0-4 of every ten), still by price descending.
    page.check("input[name=low_stock]")
    page.click("#product-filters button[type=submit]")
    page.wait_for_url("**low_stock=1**")
    page.wait_for_selector("#totals[data-loaded=true]")
    assert page.text_content('[data-total="count"]') == "60"
    assert page.text_content('[data-total="units"]') == str(12 * (0 + 1 + 2 + 3 + 4))
    first_page = [r.get_attribute("data-sku") for r in rows.all()]
    assert first_page[:3] == ["SKU-114", "SKU-113", "SKU-112"] and len(first_page) == 50
    shoot(page, "filtered")

    # Page forward: the remaining 10, then no Next link.
    page.click("a[rel=next]")
    page.wait_for_url("**after=**")
    second_page = [r.get_attribute("data-sku") for r in rows.all()]
    assert len(second_page) == 10 and second_page[-1] == "SKU-000"
    assert not set(first_page) & set(second_page)
    assert page.locator("a[rel=next]").count() == 0 and page.locator("a[rel=prev]").count() == 1

    # Download the products as XLSX and CSV from the page.
    with page.expect_download() as info:
        page.click("#export-products-xlsx")
    download = info.value
    assert download.suggested_filename.startswith("stockpipe-products-")
    path = tmp_path / download.suggested_filename
    download.save_as(path)
    sheet = load_workbook(path).worksheets[0]
    values = [[c.value for c in row] for row in sheet.iter_rows()]
    assert len(values) == 121 and values[8][:2] == ["SKU-007", "'=HYPERLINK(1)"]
    assert all(c.data_type != "f" for row in sheet.iter_rows() for c in row)
    with page.expect_download() as info:
        page.click("#export-products-csv")
    text = (info.value.path()).read_bytes().decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text, newline="")))[8][:4] == [
        "SKU-007",
        "'=HYPERLINK(1)",
        "7.50",
        "7",
    ]
    shoot(page, "after-download")
