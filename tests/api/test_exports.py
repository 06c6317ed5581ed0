"""Exports through the API: auth and permissions, filters, bad parameters, file names, the
content read back with the csv module and openpyxl, formula neutralising, keyset chunks,
the products' stock per location."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from openpyxl import load_workbook

from app.core.spreadsheet import FORMULA_TRIGGERS
from app.models import Location, PriceHistory, Product, StockAlert, StockLevel, StockMovement
from app.selectors import exports
from app.services.context import change_context
from app.services.stock import adjust_stock, transfer_stock
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


def test_many_rows_come_in_keyset_chunks(exporter, monkeypatch, django_assert_num_queries):
    monkeypatch.setattr(exports, "CHUNK_ROWS", 4)
    Product.objects.bulk_create(
        [Product(sku=f"K-{i:03d}", name=f"K {i}", price=Decimal(i), stock=i + 1) for i in range(11)]
    )
    rows = exports.iter_rows(exports.STOCK_MOVEMENTS, exports.ExportFilters())
    with django_assert_num_queries(3):  # 4 + 4 + 3 rows: three queries
        assert [r[1] for r in rows] == [f"K-{i:03d}" for i in range(11)]
    assert len(csv_rows(exporter.get("/api/exports/products"))) == 12


# --- stock per location ------------------------------------------------------------------

FIXED = [
    "sku",
    "name",
    "price",
    "stock",
    "low_stock_threshold",
    "stock_value",
    "created_at (UTC)",
    "updated_at (UTC)",
]


@pytest.fixture
def stocked(db, writer):
    """Stock in several locations, none in some; a deactivated location still holding stock
    (OLD) and one emptied before it was deactivated (GONE, a level row of 0 left)."""
    for code in ("NORTH", "SOUTH", "OLD", "GONE"):
        Location.objects.create(code=code, name=code.title())
    anchor = ProductFactory(sku="A-1", price=Decimal("2.00"), stock=10)  # at MAIN
    ProductFactory(sku="B-2", price=Decimal("1.00"), stock=4)
    empty = ProductFactory(sku="C-3", price=Decimal("1.00"), stock=0)
    adjust_stock(anchor, 6, user=writer, reason="in", location="NORTH")
    adjust_stock(anchor, 2, user=writer, reason="in", location="OLD")
    transfer_stock(anchor, "MAIN", "GONE", 3, user=writer)
    transfer_stock(anchor, "GONE", "NORTH", 3, user=writer)
    adjust_stock(empty, 5, user=writer, reason="in", location="SOUTH")
    adjust_stock(empty, -5, user=writer, reason="out", location="SOUTH")  # a level of 0
    Location.objects.filter(code__in=["OLD", "GONE"]).update(active=False)
    assert StockLevel.objects.filter(location__code="GONE", quantity=0).exists()


def test_products_carry_stock_per_location(exporter, stocked):
    rows = csv_rows(exporter.get("/api/exports/products"))
    # Fixed columns first, where they always were; then active locations and deactivated
    # ones still holding stock, by code. GONE holds nothing: left out.
    assert rows[0] == [*FIXED, "stock@MAIN", "stock@NORTH", "stock@OLD", "stock@SOUTH"]
    by_sku = {row[0]: row for row in rows[1:]}
    assert [r[0] for r in rows[1:]] == ["A-1", "B-2", "C-3"]
    assert by_sku["A-1"][3] == "18" and by_sku["A-1"][8:] == ["7", "9", "2", "0"]
    assert by_sku["B-2"][3] == "4" and by_sku["B-2"][8:] == ["4", "0", "0", "0"]
    assert by_sku["C-3"][3] == "0" and by_sku["C-3"][8:] == ["0", "0", "0", "0"]  # 0, not empty
    assert by_sku["A-1"][5] == "36.00"  # stock_value: price x the total
    for row in rows[1:]:
        assert sum(int(cell) for cell in row[8:]) == int(row[3]), row

    sheet = xlsx_rows(exporter.get("/api/exports/products", {"format": "xlsx"}))
    assert sheet[0] == rows[0]
    assert [r[0] for r in sheet[1:]] == ["A-1", "B-2", "C-3"]
    assert [r[8:] for r in sheet[1:]] == [[7, 9, 2, 0], [4, 0, 0, 0], [0, 0, 0, 0]]
    assert all(sum(r[8:]) == r[3] for r in sheet[1:])


def test_location_columns_follow_the_filters_and_the_locations_now(exporter, stocked):
    rows = csv_rows(exporter.get("/api/exports/products", {"sku_prefix": "B-"}))
    assert rows[0][8:] == ["stock@MAIN", "stock@NORTH", "stock@OLD", "stock@SOUTH"]
    assert rows[1:] and [r[8:] for r in rows[1:]] == [["4", "0", "0", "0"]]
    # Once OLD is emptied (stock may leave a deactivated location) its column goes.
    transfer_stock("A-1", "OLD", "NORTH", 2, user=None)
    rows = csv_rows(exporter.get("/api/exports/products"))
    assert rows[0][8:] == ["stock@MAIN", "stock@NORTH", "stock@SOUTH"]
    assert rows[1][8:] == ["7", "11", "0"]


def test_location_headers_are_the_codes_as_text_never_a_formula(exporter, writer):
    code = '=HYPERLINK("x")&<b>'  # the SKU rule allows all of it
    Location.objects.create(code=code, name="@evil")
    adjust_stock(ProductFactory(sku="H-1", stock=1), 2, user=writer, reason="", location=code)
    rows = csv_rows(exporter.get("/api/exports/products"))
    assert rows[0][8:] == [f"stock@{code}", "stock@MAIN"]  # by code: "=" sorts before "M"
    assert rows[1][8:] == ["2", "1"]
    response = exporter.get("/api/exports/products", {"format": "xlsx"})
    book = load_workbook(io.BytesIO(body(response)))
    cells = [cell for row in book.worksheets[0].iter_rows() for cell in row]
    assert not [cell.coordinate for cell in cells if cell.data_type == "f"]
    assert [cell.value for cell in cells[8:10]] == [f"stock@{code}", "stock@MAIN"]
    assert not any(str(c.value).startswith(FORMULA_TRIGGERS) for c in cells[:10])


def test_per_location_columns_cost_one_query_per_chunk(
    exporter, writer, monkeypatch, django_assert_num_queries
):
    for code in ("EAST", "WEST"):
        Location.objects.create(code=code, name=code.title())
    Product.objects.bulk_create(
        [Product(sku=f"K-{i:03d}", name=f"K {i}", price=Decimal(1), stock=i) for i in range(11)]
    )
    for i in range(0, 11, 2):  # every other product also at EAST; K-003, K-004 at WEST
        adjust_stock(f"K-{i:03d}", 10 + i, user=writer, reason="", location="EAST")
    for i in (3, 4):  # K-003 is the last of the first chunk, K-004 the first of the next
        adjust_stock(f"K-{i:03d}", 100, user=writer, reason="", location="WEST")
    columns = exports.PRODUCTS.columns_now()
    assert [c.header for c in columns[8:]] == ["stock@EAST", "stock@MAIN", "stock@WEST"]
    rows = exports.iter_rows(exports.PRODUCTS, exports.ExportFilters(), 4, columns)
    with django_assert_num_queries(3):  # 4 + 4 + 3 products, levels in the same: three queries
        got = list(rows)
    expected = [
        (
            f"K-{i:03d}",
            10 + i if i % 2 == 0 else 0,
            i,
            100 if i in (3, 4) else 0,
        )
        for i in range(11)
    ]
    assert [(r[0], *r[8:]) for r in got] == expected
    assert all(r[3] == sum(r[8:]) for r in got)
    with django_assert_num_queries(4):  # the locations, when not given, then the chunks
        assert len(list(exports.iter_rows(exports.PRODUCTS, exports.ExportFilters(), 4))) == 11

    # Through the API, with chunks of 4: the same values, and one query per chunk, whatever
    # the number of levels.
    monkeypatch.setattr(exports, "CHUNK_ROWS", 4)
    with CaptureQueriesContext(connection) as small:
        rows = csv_rows(exporter.get("/api/exports/products"))
    assert [(r[0], *map(int, r[8:])) for r in rows[1:]] == expected
    Product.objects.bulk_create(
        [Product(sku=f"L-{i:03d}", name="L", price=Decimal(1), stock=3) for i in range(8)]
    )
    with CaptureQueriesContext(connection) as large:
        rows = csv_rows(exporter.get("/api/exports/products"))
    assert len(rows) == 20 and [r[8:] for r in rows[12:]] == [["0", "3", "0"]] * 8
    assert export_queries(small) == 1 + 3  # the locations, then 4 + 4 + 3 products
    assert export_queries(large) == 1 + 5  # 4 + 4 + 4 + 4 + 3


def export_queries(captured: CaptureQueriesContext) -> int:
    """The queries reading products, locations or levels (not the token check's)."""
    tables = ('"app_product"', '"app_location"', '"app_stocklevel"')
    return sum(any(t in q["sql"] for t in tables) for q in captured.captured_queries)


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
