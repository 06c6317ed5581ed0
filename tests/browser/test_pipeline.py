"""Run a pipeline from the page in a real browser: preview (dry run diff), then commit."""

import json
from decimal import Decimal

import pytest

from app.models import PipelineRun, Product
from tests.browser.conftest import log_in
from tests.factories import ProductFactory

pytestmark = pytest.mark.browser


def test_preview_then_run_from_the_page(page, operator, shoot):
    ProductFactory(sku="LAP-1", name="Laptop", price=Decimal("999.00"), stock=10)
    ProductFactory(sku="MOU-1", name="Mouse", price=Decimal("19.90"), stock=40)
    spec = {
        "name": "spring sale",
        "steps": [
            {"op": "set_prices", "prices": {"LAP-1": "899.00"}},
            {"op": "adjust_stock", "deltas": {"LAP-1": -8}},
        ],
    }
    log_in(page, operator, next_url="/pipelines/")
    page.fill("#id_source", json.dumps(spec, indent=2))
    shoot(page, "form")
    page.click("button[value=preview]")
    page.wait_for_url("**/pipelines/runs/*/")
    assert page.text_content("#run-status") == "previewed"
    rows = [r.locator("td").all_inner_texts() for r in page.locator("#diff tbody tr").all()]
    assert rows[0] == ["LAP-1", "updated", "price", "999.00", "899.00"]
    assert rows[1] == ["stock", "10", "2"]
    assert page.locator("#preview-alerts tbody tr").all_inner_texts() == ["LAP-1\t2\t5"]
    assert Product.objects.get(sku="LAP-1").price == Decimal("999.00")  # nothing changed yet
    shoot(page, "preview")

    page.click("#commit")
    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent === 'succeeded'"
    )
    shoot(page, "result")
    assert "1 price change, 1 alert opened" in page.text_content("#summary")
    product = Product.objects.get(sku="LAP-1")
    assert (product.price, product.stock) == (Decimal("899.00"), 2)
    run = PipelineRun.objects.get(status="succeeded")
    assert run.user == operator and page.url.endswith(f"/pipelines/runs/{run.pk}/")

    # The product page now shows the reduction with its Omnibus prior price.
    page.click("#result-prices a")
    page.wait_for_url("**/products/LAP-1/")
    assert page.text_content("#prior-price strong") == "999.00"
    assert page.locator("svg.price-chart polyline.line").count() == 1
    shoot(page, "product")


def test_csv_upload_from_the_page(page, operator, shoot, tmp_path):
    feed = tmp_path / "feed.csv"
    feed.write_text("sku,name,price,stock\nDOCK-1,Dock,120.00,3\n")
    log_in(page, operator, next_url="/pipelines/")
    page.set_input_files("#id_upload", str(feed))
    page.click("button[value=preview]")
    page.wait_for_url("**/pipelines/runs/*/")
    assert "1 product would change" in page.text_content("#preview h2")
    assert not Product.objects.filter(sku="DOCK-1").exists()
    page.click("#commit")
    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent === 'succeeded'"
    )
    assert Product.objects.get(sku="DOCK-1").stock == 3
    shoot(page, "result")


def test_pipeline_page_is_forbidden_without_permission(page, transactional_db, shoot):
    from tests.factories import UserFactory

    clerk = UserFactory(username="clerk")
    log_in(page, clerk)
    assert page.locator("nav a", has_text="Pipelines").count() == 0
    response = page.goto("/pipelines/")
    assert response.status == 403
    assert "Not allowed" in page.text_content("h1")
    shoot(page, "forbidden")
