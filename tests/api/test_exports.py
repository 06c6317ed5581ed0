"""Exports through the API: auth and permissions, filters, bad parameters, file names, the
content read back with the csv module and openpyxl, formula neutralising, keyset chunks."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone
from openpyxl import load_workbook

from app.models import PriceHistory, Product, StockAlert, StockMovement
from app.selectors import exports
from app.services.context import change_context
from app.services.tokens import create_token
from tests.api.conftest import ApiClient, assert_error_shape, user_with
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

VIEW_ALL = ("view_product", "view_pricehistory", "view_stockmovement", "view_stockalert")
DATASETS = ["products", "price-history", "stock-movements", "alerts"]


@pytest.fixture
def exporter(db):
    return ApiClient(create_token(user_with(*VIEW_ALL, username="exporter"), "exports")[1])


def body(response) -> bytes:
    assert response.streaming, "exports are streamed"
    return b"".join(response.streaming_content)


def csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, response
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    return list(csv.reader(io.StringIO(body(response).decode("utf-8-sig"), newline="")))


def xlsx_rows(response) -> list[list]:
    assert response.status_code == 200, response
    assert response["Content-Type"].startswith("application/vnd.openxmlformats")
    book = load_workbook(io.BytesIO(body(response)))
    return [[cell.value for cell in row] for row in book.worksheets[0].iter_rows()]


def test_products_csv_with_stock_and_value(exporter):
    ProductFactory(sku="B-2", name="Bolt", price=Decimal("0.25"), stock=400)
    ProductFactory(sku="A-1", name="Anchor", price=Decimal("12.50"), stock=3)
    rows = csv_rows(exporter.get("/api/exports/products"))
    assert rows[0][:7] == [
        "sku",
        "name",
        "price",
        "stock",
        "low_stock_threshold",
        "stock_value",
        "created_at (UTC)",
    ]
    assert [r[:6] for r in rows[1:]] == [
        ["A-1", "Anchor", "12.50", "3", "5", "37.50"],
        ["B-2", "Bolt", "0.25", "400", "5", "100.00"],
    ]
    assert datetime.fromisoformat(rows[1][7]).tzinfo is not None


def test_file_names_carry_the_dataset_and_the_date(exporter):
    today = timezone.now().astimezone(UTC).date().isoformat()
    for dataset in DATASETS:
        for fmt in ("csv", "xlsx"):
            response = exporter.get(f"/api/exports/{dataset}", {"format": fmt})
            assert response.status_code == 200
            assert response["Content-Disposition"] == (
                f'attachment; filename="stockpipe-{dataset}-{today}.{fmt}"'
            )
            assert response["Cache-Control"] == "no-store"


def test_formulas_are_neutralised_and_numbers_stay_numbers(exporter):
    product = ProductFactory(sku="=SKU", name="@evil", stock=10)
    ProductFactory(sku="+PLUS", name="-minus")
    with change_context(source="=HYPERLINK(1)"):
        product.stock = 5  # a ledger delta of -5
        product.save()
    rows = csv_rows(exporter.get("/api/exports/products"))
    assert [r[:2] for r in rows[1:]] == [["'+PLUS", "'-minus"], ["'=SKU", "'@evil"]]
    ledger = csv_rows(exporter.get("/api/exports/stock-movements"))
    last = ledger[-1]
    assert (last[1], last[2], last[3], last[7]) == ("'=SKU", "-5", "5", "'=HYPERLINK(1)")

    sheet = xlsx_rows(exporter.get("/api/exports/stock-movements", {"format": "xlsx"}))
    assert sheet[-1][1] == "'=SKU" and sheet[-1][2] == -5 and sheet[-1][3] == 5
    assert sheet[-1][7] == "'=HYPERLINK(1)"
    book = load_workbook(
        io.BytesIO(body(exporter.get("/api/exports/products", {"format": "xlsx"})))
    )
    cells = [cell for row in book.worksheets[0].iter_rows() for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    assert {cell.value for cell in cells} >= {"'=SKU", "'@evil", "'+PLUS", "'-minus"}


def test_price_history_and_alerts(exporter, writer):
    product = ProductFactory(sku="P-1", name="Pump", price=Decimal("10.00"), stock=50)
    with change_context(user=writer, source="api"):
        product.price = Decimal("8.00")
        product.stock = 2  # opens an alert
        product.save()
    history = csv_rows(exporter.get("/api/exports/price-history"))
    assert history[0] == [
        "id",
        "sku",
        "name",
        "old_price",
        "new_price",
        "changed_at (UTC)",
        "changed_by",
        "source",
    ]
    assert history[1][1:5] == ["P-1", "Pump", "10.00", "8.00"]
    assert history[1][6:] == [writer.username, "api"]
    alerts = xlsx_rows(exporter.get("/api/exports/alerts", {"format": "xlsx"}))
    assert alerts[0][:5] == ["id", "sku", "name", "stock", "threshold"]
    assert alerts[1][1:5] == ["P-1", "Pump", 2, 5]
    assert isinstance(alerts[1][5], datetime) and alerts[1][6] is None
    assert alerts[1][7] == "pending"


def test_sku_prefix_and_date_range(exporter):
    for sku in ("LAP-1", "LAP-2", "MOU-1"):
        ProductFactory(sku=sku)
    old = timezone.now() - timedelta(days=10)
    Product.objects.filter(sku="LAP-2").update(stock=1)
    Product.objects.filter(sku="LAP-1").update(stock=2)
    StockMovement.objects.filter(sku="LAP-1").update(created_at=old)
    rows = csv_rows(exporter.get("/api/exports/products", {"sku_prefix": "LAP-"}))
    assert [r[0] for r in rows[1:]] == ["LAP-1", "LAP-2"]

    since = (timezone.now() - timedelta(days=1)).date().isoformat()
    ledger = csv_rows(
        exporter.get("/api/exports/stock-movements", {"sku_prefix": "LAP-", "since": since})
    )
    assert sorted(r[1] for r in ledger[1:]) == ["LAP-2", "LAP-2"]  # created, then moved
    until = (old + timedelta(days=1)).isoformat()  # a date-time: exclusive bound
    ledger = csv_rows(exporter.get("/api/exports/stock-movements", {"until": until}))
    assert [(r[1], r[2]) for r in ledger[1:]] == [("LAP-1", "50"), ("LAP-1", "-48")]
    # A bare date as ``until`` includes that whole day.
    ledger = csv_rows(
        exporter.get("/api/exports/stock-movements", {"until": old.date().isoformat()})
    )
    assert len(ledger) == 3


def test_many_rows_come_in_keyset_chunks(exporter, monkeypatch, django_assert_max_num_queries):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 4)
    Product.objects.bulk_create(
        [Product(sku=f"K-{i:03d}", name=f"K {i}", price=Decimal(i), stock=i) for i in range(11)]
    )
    rows = exports.iter_rows(exports.PRODUCTS, exports.ExportFilters(), chunk_rows=4)
    with django_assert_max_num_queries(3):  # 4 + 4 + 3 rows: three queries
        assert [r[0] for r in rows] == [f"K-{i:03d}" for i in range(11)]
    assert len(csv_rows(exporter.get("/api/exports/products"))) == 12


def test_needs_authentication_and_the_view_permission(anon, reader_api):
    for dataset, perm in zip(
        DATASETS,
        [
            "app.view_product",
            "app.view_pricehistory",
            "app.view_stockmovement",
            "app.view_stockalert",
        ],
        strict=True,
    ):
        assert_error_shape(anon.get(f"/api/exports/{dataset}"), 401)
        detail = assert_error_shape(reader_api.get(f"/api/exports/{dataset}"), 403)["detail"]
        assert perm in detail
    only_products = ApiClient(create_token(user_with("view_product"), "p")[1])
    assert only_products.get("/api/exports/products").status_code == 200
    assert_error_shape(only_products.get("/api/exports/alerts"), 403)


def test_session_users_export_too(db):
    client = Client()
    client.force_login(user_with("view_product"))
    response = client.get("/api/exports/products?format=xlsx")
    assert response.status_code == 200 and xlsx_rows(response)[0][0] == "sku"


@pytest.mark.parametrize(
    ("params", "param", "words"),
    [
        ({"format": "pdf"}, "format", "csv"),
        ({"since": "yesterday"}, "since", "not a date"),
        ({"until": "2026-13-01"}, "until", "not a date"),
        ({"since": "2026-12-05", "until": "2026-12-04"}, "until", "later than since"),
        ({"since": "2026-12-04T10:00:00", "until": "2026-12-04T10:00:00"}, "until", "later"),
        ({"sku_prefix": "x" * 65}, "sku_prefix", "64"),
        ({"since": "9" * 41}, "since", "40"),
    ],
)
def test_bad_parameters_are_422_naming_the_parameter(exporter, params, param, words):
    body = assert_error_shape(exporter.get("/api/exports/price-history", params), 422)
    locs = [error["loc"] for error in body["errors"]]
    assert ["query", param] in locs, body
    assert any(words in error["msg"] for error in body["errors"]), body


def test_a_control_character_in_a_filter_is_400(exporter):
    body = assert_error_shape(exporter.get("/api/exports/products", {"sku_prefix": "a\x01"}), 400)
    assert body["errors"][0]["loc"] == ["query", "sku_prefix"]


def test_listed_in_the_openapi_document():
    paths = Client().get("/api/openapi.json").json()["paths"]
    for dataset in DATASETS:
        operation = paths[f"/api/exports/{dataset}"]["get"]
        assert set(operation["responses"]["200"]["content"]) == {
            "text/csv",
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        }
        assert {p["name"] for p in operation["parameters"]} == {
            "format",
            "sku_prefix",
            "since",
            "until",
        }
        assert {"401", "403", "422"} <= set(operation["responses"])


def test_deleted_products_history_is_exported_with_its_sku(exporter):
    product = ProductFactory(sku="GONE-1", price=Decimal("5.00"))
    product.price = Decimal("4.00")
    product.save()
    product.delete()
    rows = csv_rows(exporter.get("/api/exports/price-history", {"sku_prefix": "GONE-"}))
    assert [r[1] for r in rows[1:]] == ["GONE-1"]
    assert PriceHistory.objects.filter(sku="GONE-1", product=None).exists()
    assert StockAlert.objects.count() == 0


def test_date_time_bounds_with_offsets(exporter):
    ProductFactory(sku="T-1")
    StockMovement.objects.update(created_at=datetime(2026, 12, 4, 9, 30, tzinfo=UTC))
    for since, count in [
        ("2026-12-04T10:00:00+01:00", 1),  # 09:00 UTC
        ("2026-12-04T10:00:00 01:00", 1),  # the same, its "+" decoded as a space
        ("2026-12-04T09:30:00Z", 1),
        ("2026-12-04T09:30:01", 0),  # no offset: UTC
        ("2026-12-04 09:30", 1),
        ("2026-12-04T09:30:00.5 00:00", 0),
    ]:
        rows = csv_rows(exporter.get("/api/exports/stock-movements", {"since": since}))
        assert len(rows) - 1 == count, since
