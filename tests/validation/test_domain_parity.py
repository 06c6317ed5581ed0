"""Issue 11 "one set of domain types" and issue 12 finding 4: every entry point accepts and
refuses exactly the same SKU, name, price and stock values.

Each value goes through the API (POST /api/products), a pipeline with a JSON row, a pipeline
with a CSV line, the admin's add form (a real POST), and the model (``full_clean`` and, for
SKU and name, ``save()``); all of them must give the expected verdict.
"""

from __future__ import annotations

import csv
import io
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from app.models import Product
from app.utils.utils import process_pipeline
from tests.factories import ProductFactory

GOOD = {"sku": "OK-1", "name": "Laptop", "price": "19.90", "stock": 3}

CASES = [
    # SKU: 1..64 printable characters, no whitespace, no "/", not "." or "..".
    ("sku", "LAP-1", True),
    ("sku", "ÄPFEL_1.5#x", True),
    ("sku", "S" * 64, True),
    ("sku", "S" * 65, False),
    ("sku", "", False),
    ("sku", "A B", False),
    ("sku", " A", False),
    ("sku", "A\tB", False),
    ("sku", "A\nB", False),
    ("sku", "A\rB", False),
    ("sku", "A\x00B", False),
    ("sku", "A/B", False),
    ("sku", "A\u00a0B", False),
    ("sku", "A\u200bB", False),
    ("sku", "A\x7fB", False),
    ("sku", "A\x85B", False),
    ("sku", "..", False),
    # Name: 1..200 characters, not blank, no control characters or line breaks.
    ("name", "Café crème 50 cl", True),
    ("name", " Leading space", True),
    ("name", "N" * 200, True),
    ("name", "N" * 201, False),
    ("name", "", False),
    ("name", "   ", False),
    ("name", "Line\nbreak", False),
    ("name", "Tab\tname", False),
    ("name", "NUL\x00", False),
    ("name", "CR\r", False),
    ("name", "Sep\u2028arator", False),
    ("name", "Bell\x07", False),
    # Price: finite, not negative, at most 12 digits of which 2 decimals.
    ("price", "0", True),
    ("price", "9999999999.99", True),
    ("price", "-1", False),
    ("price", "1.005", False),
    ("price", "10000000000.00", False),
    ("price", "NaN", False),
    ("price", "Infinity", False),
    ("price", "abc", False),
    # Stock: an integer from 0 to 2**31 - 1.
    ("stock", 0, True),
    ("stock", 2**31 - 1, True),
    ("stock", -1, False),
    ("stock", 2**31, False),
    ("stock", "abc", False),
    # Low-stock threshold: the same range.
    ("low_stock_threshold", 0, True),
    ("low_stock_threshold", 2**31 - 1, True),
    ("low_stock_threshold", -1, False),
    ("low_stock_threshold", 2**31, False),
]


def _values(field, value):
    return {**GOOD, field: value}


def via_api(api, values):
    response = api.post("/api/products", values)
    assert response.status_code in (201, 400, 422), response.content
    return response.status_code == 201


def via_pipeline_json(operator, values):
    result = process_pipeline(
        {"steps": [{"op": "upsert_products", "rows": [values]}]}, user=operator
    )
    return result["status"] == "succeeded"


def via_pipeline_csv(operator, values):
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(list(values))
    writer.writerow([str(v) for v in values.values()])
    spec = {"steps": [{"op": "upsert_products", "csv": out.getvalue()}]}
    return process_pipeline(spec, user=operator)["status"] == "succeeded"


def via_admin(admin_client, values):
    data = {"low_stock_threshold": 5, **values}
    for inline in ("price_history", "stock_alerts"):  # the read-only inlines' management forms
        data |= {f"{inline}-TOTAL_FORMS": 0, f"{inline}-INITIAL_FORMS": 0}
    response = admin_client.post("/admin/app/product/add/", data)
    assert response.status_code in (200, 302, 400), response.status_code
    return response.status_code == 302


def via_model(values):
    product = Product(**values)
    try:
        product.full_clean()
    except ValidationError:
        return False
    return True


def via_save(field, value):
    product = Product(**{**GOOD, "price": Decimal("1.00"), field: value})
    try:
        product.save()
    except ValidationError:
        return False
    return True


@pytest.mark.django_db
@pytest.mark.parametrize(("field", "value", "accepted"), CASES)
def test_every_entry_point_gives_the_same_verdict(
    api, operator, admin_client, field, value, accepted
):
    values = _values(field, value)
    verdicts = {}
    for entry, check in [
        ("api", lambda: via_api(api, values)),
        ("pipeline json", lambda: via_pipeline_json(operator, values)),
        ("pipeline csv", lambda: via_pipeline_csv(operator, values)),
        ("admin", lambda: via_admin(admin_client, values)),
        ("model full_clean", lambda: via_model(values)),
    ]:
        verdicts[entry] = check()
        Product.objects.all().delete()
    if field in ("sku", "name"):
        verdicts["Product.save()"] = via_save(field, value)
    assert verdicts == dict.fromkeys(verdicts, accepted)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("delta", "accepted"),
    [
        (5, True),
        (-5, True),
        (2**31 - 1 - 100, True),
        (2**31, False),
        (-(2**31), False),
        ("abc", False),
        (1.5, False),
    ],
)
def test_a_stock_delta_gets_the_same_verdict_from_the_api_and_a_pipeline(
    api, operator, delta, accepted
):
    """A zero delta differs on purpose: a single stock move must move stock (the API refuses
    it), a zero in a pipeline's map of deltas is a no-op."""
    ProductFactory(sku="D-1", stock=100)
    moved = api.post("/api/products/D-1/stock", {"delta": delta})
    assert moved.status_code in (200, 201, 422), moved.content
    Product.objects.filter(sku="D-1").update(stock=100)
    spec = {"steps": [{"op": "adjust_stock", "deltas": {"D-1": delta}}]}
    result = process_pipeline(spec, user=operator)
    assert {"api": moved.status_code != 422, "pipeline": result["status"] == "succeeded"} == {
        "api": accepted,
        "pipeline": accepted,
    }
