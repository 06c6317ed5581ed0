"""Issue 12 finding 4: rows whose SKU or name breaks today's rules (written before the rules,
or by raw SQL) never make a page answer 500, stay reachable and changeable through the API,
and are reported by ``manage.py check_product_rules``."""

from __future__ import annotations

import io
from decimal import Decimal
from urllib.parse import quote

import pytest
from django.core.exceptions import ValidationError
from django.core.management import CommandError, call_command

from app.models import PriceHistory, Product
from app.utils.utils import process_pipeline
from tests.factories import ProductFactory

from .legacy import legacy_product

pytestmark = [pytest.mark.django_db, pytest.mark.server_side_cursors]  # QuerySet.iterator()

LEGACY_SKUS = ["NL\nSKU", "TAB\tSKU", "SL/ASH", "SP ACE", "CR\rSKU"]


def url_of(sku: str) -> str:
    return "/api/products/" + quote(sku, safe="")


@pytest.mark.parametrize("sku", LEGACY_SKUS)
def test_pages_render_with_a_legacy_sku(operator_client, operator, sku):
    product = legacy_product(sku, name="Odd\nname", stock=50)
    # A price change (dashboard's recent changes) and an open alert (dashboard's alerts) that
    # link to the product: saving is allowed, the unchanged SKU is not re-checked.
    product.price = Decimal("12.00")
    product.save()
    product.stock = 1
    product.save()
    result = process_pipeline(
        {"steps": [{"op": "set_prices", "prices": {sku: "13.00"}}]}, user=operator
    )
    assert result["status"] == "succeeded", result
    link = "/products/" + quote(sku, safe="/") + "/"

    for path in ["/", "/products/", f"/pipelines/runs/{result['run_id']}/"]:
        response = operator_client.get(path)
        assert response.status_code == 200, path
        assert f'href="{link}"' in response.content.decode(), path
    detail = operator_client.get(link)
    assert detail.status_code == 200
    assert detail.context["product"].pk == product.pk


@pytest.mark.parametrize("sku", LEGACY_SKUS)
def test_api_reads_changes_and_deletes_a_legacy_sku(api, sku):
    product = legacy_product(sku, stock=5)

    got = api.get(url_of(sku))
    assert got.status_code == 200, got.content
    assert got.json()["sku"] == sku

    patched = api.patch(url_of(sku), {"price": "7.50", "stock": 9})
    assert patched.status_code == 200, patched.content
    product.refresh_from_db()
    assert (product.price, product.stock) == (Decimal("7.50"), 9)
    assert PriceHistory.objects.filter(product=product, new_price=Decimal("7.50")).exists()

    if "/" not in sku:  # the sub-resources take one path segment
        moved = api.post(url_of(sku) + "/stock", {"delta": 1})
        assert moved.status_code in (200, 201), moved.content
        history = api.get(url_of(sku) + "/price-history")
        assert history.status_code == 200 and history.json()["count"] == 1

    assert api.delete(url_of(sku)).status_code == 204
    assert not Product.objects.filter(pk=product.pk).exists()


def test_sub_resources_still_win_over_a_slash_sku(api):
    """``/products/{sku}/stock`` is matched before the catch-all product URL."""
    ProductFactory(sku="W-1", stock=5)
    moved = api.post("/api/products/W-1/stock", {"delta": 2})
    assert moved.status_code in (200, 201), moved.content
    assert Product.objects.get(sku="W-1").stock == 7


def test_a_new_product_cannot_take_a_rule_breaking_sku(api):
    response = api.post("/api/products", {"sku": "A/B", "name": "x", "price": "1.00"})
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == ["body", "payload", "sku"]
    assert "'/'" in response.json()["errors"][0]["msg"]
    assert not Product.objects.exists()


def test_check_product_rules_reports_broken_rows_and_changes_nothing():
    ProductFactory(sku="GOOD-1", name="Fine")
    bad_sku = legacy_product("BAD SKU", name="Fine too")
    bad_name = legacy_product("NAME-1", name="Two\nlines")
    before = list(Product.objects.order_by("pk").values_list("sku", "name"))
    out = io.StringIO()

    with pytest.raises(CommandError) as failed:
        call_command("check_product_rules", stdout=out)

    assert failed.value.returncode == 1
    assert "2 product(s)" in str(failed.value)
    report = out.getvalue().splitlines()
    assert len(report) == 2
    assert f"product {bad_sku.pk} sku='BAD SKU'" in report[0] and "whitespace" in report[0]
    assert f"product {bad_name.pk} sku='NAME-1'" in report[1]
    assert "name: name must not contain control characters" in report[1]
    assert list(Product.objects.order_by("pk").values_list("sku", "name")) == before


def test_check_product_rules_passes_on_clean_data():
    ProductFactory(sku="GOOD-1", name="Fine")
    out = io.StringIO()
    call_command("check_product_rules", stdout=out)
    assert "Every product follows the SKU and name rules." in out.getvalue()


def test_saving_a_new_value_that_breaks_the_rule_is_refused():
    product = legacy_product("TAB\tSKU")
    product.name = "still\nbad"
    with pytest.raises(ValidationError, match="name must not contain control characters"):
        product.save()


def test_check_product_rules_walks_the_table_in_keyset_chunks(django_assert_num_queries):
    """Bounded memory behind PgBouncer (no server-side cursor): one query per 2,000 rows."""
    Product.objects.bulk_create(
        Product(sku=f"P-{n}", name="Fine", price="1.00", stock=10) for n in range(4001)
    )
    legacy_product("LAST BAD", name="Fine")
    out = io.StringIO()
    with django_assert_num_queries(3), pytest.raises(CommandError) as failed:
        call_command("check_product_rules", stdout=out)
    assert "1 product(s)" in str(failed.value)
    assert "sku='LAST BAD'" in out.getvalue()
