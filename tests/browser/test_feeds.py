"""A supplier's XLSX from the page: choose a profile, upload, preview (counts, diff, rejected
rows), apply exactly the preview, download the rejected rows as CSV."""

import csv
import io
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission

from app.models import PipelineRun, Product
from tests.browser.conftest import log_in
from tests.factories import ProductFactory
from tests.feeds import fixtures

pytestmark = pytest.mark.browser


def test_xlsx_feed_through_a_profile(page, operator, shoot, tmp_path):
    operator.user_permissions.add(Permission.objects.get(codename="view_importprofile"))
    fixtures.xlsx_profile()
    ProductFactory(sku="X-1", name="Kabel", price=Decimal("4.00"), stock=10)
    xlsx = tmp_path / "lagerliste.xlsx"
    xlsx.write_bytes(fixtures.mixed_xlsx())

    log_in(page, operator, next_url="/pipelines/")
    page.select_option("#id_profile", "lieferant-xlsx")
    page.select_option("#id_policy", "skip_invalid_rows")
    page.set_input_files("#id_upload", str(xlsx))
    shoot(page, "form")
    page.click("button[value=preview]")
    page.wait_for_url("**/pipelines/runs/*/")
    assert page.text_content("#run-status") == "previewed"
    counts = page.locator("#preview-counts tbody td").all_inner_texts()
    assert counts == ["3", "1", "0", "1"]  # new, changed, unchanged, rejected
    diff = [r.locator("td").all_inner_texts() for r in page.locator("#diff tbody tr").all()]
    assert ["X-1", "updated", "price", "4.00", "4.50"] in diff
    rejected = page.locator("#rejected-rows tbody tr").all_inner_texts()
    assert len(rejected) == 1
    assert rejected[0].split("\t")[:3] == ["6", "Preis", "n/a"]
    assert not Product.objects.filter(sku="X-2").exists()
    shoot(page, "preview")

    page.click("#commit")
    page.wait_for_function(
        "() => document.querySelector('#run-status').textContent === 'succeeded'"
    )
    shoot(page, "applied")
    assert Product.objects.get(sku="X-1").price == Decimal("4.50")
    assert Product.objects.get(sku="X-2").price == Decimal("3.20")
    run = PipelineRun.objects.get(status="succeeded")
    assert page.url.endswith(f"/pipelines/runs/{run.pk}/")

    with page.expect_download() as info:
        page.click("#rejected-csv")
    download = info.value
    assert download.suggested_filename == f"run-{run.pk}-rejected.csv"
    with open(download.path(), encoding="utf-8-sig") as fh:
        rows = list(csv.reader(io.StringIO(fh.read())))
    assert rows[0][:4] == ["row", "column", "value", "message"]
    assert rows[1][:3] == ["6", "Preis", "n/a"]
    assert "X-4" in rows[1]
