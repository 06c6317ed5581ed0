"""The product list (filters, sorts, keyset pages both ways, totals) and the export pages,
through Django's test client."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.utils import timezone
from openpyxl import load_workbook

from app.models import Location, Product
from app.selectors import catalogue
from app.services.stock import adjust_stock
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def catalogue_rows(db):
    """25 products; prices and stock chosen so that sorts differ from SKU order and have ties."""
    now = timezone.now()
    Product.objects.bulk_create(
        [
            Product(
                sku=f"P-{i:02d}",
                name=f"Item {(i * 7) % 25:02d}",
                price=Decimal(10 + (i * 3) % 5),  # ties: 5 prices
                stock=(i * 11) % 25,
                low_stock_threshold=5,
                created_at=now,
                updated_at=now,
            )
            for i in range(25)
        ]
    )
    return list(Product.objects.order_by("sku"))


def skus(html: str) -> list[str]:
    return re.findall(r'<tr data-sku="([^"]+)">', html)


def follow(client, url: str, rel: str) -> tuple[str, str | None]:
    html = client.get(url).content.decode()
    match = re.search(rf'rel="{rel}" href="([^"]+)"', html)
    return html, (match.group(1).replace("&amp;", "&") if match else None)


def walk(client, first: str) -> list[str]:
    """Every SKU, following Next links from ``first``."""
    seen, url = [], first
    while url:
        html, url = follow(client, url if url.startswith("/") else "/products/" + url, "next")
        seen += skus(html)
    return seen


@pytest.mark.parametrize("sort", catalogue.SORT_CHOICES)
def test_every_sort_pages_through_every_product_once_in_order(
    logged_in, catalogue_rows, monkeypatch, sort
):
    monkeypatch.setattr(catalogue, "PAGE_SIZE", 4)
    monkeypatch.setattr(catalogue.product_page, "__defaults__", (4,))
    column = catalogue.SORTS[sort.lstrip("-")][0]
    expected = sorted(
        catalogue_rows, key=lambda p: (getattr(p, column), p.pk), reverse=sort.startswith("-")
    )
    assert walk(logged_in, f"/products/?sort={sort}") == [p.sku for p in expected]


def test_previous_links_walk_back(logged_in, catalogue_rows, monkeypatch):
    monkeypatch.setattr(catalogue.product_page, "__defaults__", (4,))
    url, pages = "/products/?sort=-price", []
    for _ in range(3):
        html, url = follow(logged_in, url, "next")
        pages.append(skus(html))
        url = "/products/" + url
    html, prev = follow(logged_in, url, "prev")  # on page 4, back to page 3
    assert skus(html) and skus(logged_in.get("/products/" + prev).content.decode()) == pages[2]
    back2 = follow(logged_in, "/products/" + prev, "prev")[1]
    assert skus(logged_in.get("/products/" + back2).content.decode()) == pages[1]
    html, back1 = follow(logged_in, "/products/" + back2, "prev")
    first, none = follow(logged_in, "/products/" + back1, "prev")
    assert skus(first) == pages[0] and none is None  # back at the start: no Previous


def test_filters_low_stock_prefix_and_search(logged_in):
    ProductFactory(sku="LAP-1", name="Laptop", stock=2)
    ProductFactory(sku="LAP-2", name="Laptop stand", stock=50)
    ProductFactory(sku="MOU-1", name="Mouse", stock=1)
    assert skus(logged_in.get("/products/?low_stock=1").content.decode()) == ["LAP-1", "MOU-1"]
    assert skus(logged_in.get("/products/?sku_prefix=LAP-").content.decode()) == ["LAP-1", "LAP-2"]
    assert skus(logged_in.get("/products/?q=stand").content.decode()) == ["LAP-2"]
    assert skus(logged_in.get("/products/?q=mou-").content.decode()) == ["MOU-1"]  # SKU too
    page = logged_in.get("/products/?sku_prefix=LAP-&low_stock=1").content.decode()
    assert skus(page) == ["LAP-1"]
    # Sort links keep the filters.
    assert 'href="?sku_prefix=LAP-&amp;low_stock=1&amp;sort=price"' in page


def test_totals_of_the_filtered_set(logged_in):
    ProductFactory(sku="A-1", price=Decimal("2.50"), stock=4)
    ProductFactory(sku="A-2", price=Decimal("1.25"), stock=2, low_stock_threshold=5)
    ProductFactory(sku="B-1", price=Decimal("100.00"), stock=0)
    page = logged_in.get("/products/?sku_prefix=A-").content.decode()
    url = re.search(r'id="totals" data-url="([^"]+)"', page).group(1).replace("&amp;", "&")
    assert logged_in.get(url).json() == {"count": 2, "units": 6, "value": "12.50"}
    assert logged_in.get("/products/totals.json").json() == {
        "count": 3,
        "units": 6,
        "value": "12.50",
    }
    assert logged_in.get("/products/totals.json?low_stock=1").json()["count"] == 3


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ("sort=colour", "sort"),
        ("after=bm90IGEgY3Vyc29y", "after"),
        ("before=%%%", "before"),
        ("low_stock=maybe", "low_stock"),
        ("sku_prefix=" + "x" * 65, "sku_prefix"),
    ],
)
def test_bad_parameters_are_400_naming_them(logged_in, query, param):
    response = logged_in.get(f"/products/?{query}")
    assert response.status_code == 400
    error = re.search(r'id="list-error">([^<]+)<', response.content.decode()).group(1)
    assert error.startswith(f"{param}:")
    assert logged_in.get(f"/products/totals.json?{query}").json()["param"] == param


def test_a_cursor_of_another_sort_is_refused(logged_in, catalogue_rows, monkeypatch):
    monkeypatch.setattr(catalogue.product_page, "__defaults__", (4,))
    _, next_url = follow(logged_in, "/products/?sort=price", "next")
    cursor = re.search(r"after=([^&]+)", next_url).group(1)
    response = logged_in.get(f"/products/?sort=name&after={cursor}")
    assert response.status_code == 400 and b"sorted by name" in response.content


def test_export_links_and_page_need_the_view_permissions(logged_in, user):
    page = logged_in.get("/products/?sku_prefix=LAP-").content.decode()
    assert 'id="list-exports"' not in page and ">Exports<" not in page
    assert logged_in.get("/exports/download?dataset=products").status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_product"))
    page = logged_in.get("/products/?sku_prefix=LAP-").content.decode()
    assert 'href="/exports/download?dataset=products&amp;format=xlsx&amp;sku_prefix=LAP-"' in page
    form = logged_in.get("/exports/").content.decode()
    assert 'id="export-form"' in form
    assert logged_in.get("/exports/download?dataset=alerts").status_code == 403


def test_export_download_from_the_page(logged_in, user):
    user.user_permissions.add(Permission.objects.get(codename="view_product"))
    Location.objects.create(code="SHOP", name="Shop")
    laptop = ProductFactory(sku="LAP-1", name="=Laptop", stock=-0 + 3)
    ProductFactory(sku="MOU-1")
    adjust_stock(laptop, 4, user=user, reason="", location="SHOP")
    response = logged_in.get("/exports/download?dataset=products&format=csv&sku_prefix=LAP")
    assert response.status_code == 200 and response.streaming
    assert response["Content-Disposition"].startswith('attachment; filename="stockpipe-products-')
    text = b"".join(response.streaming_content).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(text, newline="")))
    assert rows[0][8:] == ["stock@MAIN", "stock@SHOP"]  # stock per location, at the end
    assert [r[:4] + r[8:] for r in rows[1:]] == [["LAP-1", "'=Laptop", "10.00", "7", "3", "4"]]
    response = logged_in.get("/exports/download?dataset=products&format=xlsx")
    book = load_workbook(io.BytesIO(b"".join(response.streaming_content)))
    values = [[c.value for c in row] for row in book.worksheets[0].iter_rows()]
    assert [row[0] for row in values] == ["sku", "LAP-1", "MOU-1"]
    assert [row[8:] for row in values] == [["stock@MAIN", "stock@SHOP"], [3, 4], [50, 0]]


def test_export_form_shows_errors_naming_the_field(logged_in, user):
    user.user_permissions.add(Permission.objects.get(codename="view_stockalert"))
    response = logged_in.get("/exports/download?dataset=alerts&format=csv&since=tomorrow")
    assert response.status_code == 400
    assert "since: &#x27;tomorrow&#x27; is not a date" in response.content.decode()
    response = logged_in.get("/exports/download?dataset=alerts&format=ods")
    assert response.status_code == 400 and b"ods is not one of" in response.content


@pytest.mark.parametrize(
    "url", ["/products/totals.json", "/exports/", "/exports/download?dataset=products"]
)
def test_new_pages_need_login(client, url):
    response = client.get(url)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
