"""The pipeline page: paste or upload, preview (dry run diff), run for real, see the result."""

import json
import re
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from app.models import PipelineRun, PriceHistory, Product, StockAlert
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "restock and reprice",
    "steps": [
        {"op": "set_prices", "prices": {"LAP-1": "899.00"}},
        {"op": "adjust_stock", "deltas": {"LAP-1": -8, "MOU-1": 5}},
    ],
}


@pytest.fixture
def catalogue(db):
    return [
        ProductFactory(sku="LAP-1", name="Laptop", price=Decimal("999.00"), stock=10),
        ProductFactory(sku="MOU-1", name="Mouse", price=Decimal("19.90"), stock=40),
    ]


@pytest.fixture
def op_client(client, operator):
    client.force_login(operator)
    return client


def snapshot():
    return list(Product.objects.order_by("sku").values_list("sku", "price", "stock"))


def test_without_permission_is_403(logged_in):
    response = logged_in.get("/pipelines/")
    assert response.status_code == 403
    assert b"Not allowed" in response.content
    assert logged_in.post("/pipelines/", {"source": json.dumps(SPEC)}).status_code == 403
    assert PipelineRun.objects.count() == 0


def test_form_renders_with_csrf(op_client):
    page = op_client.get("/pipelines/").content.decode()
    assert "csrfmiddlewaretoken" in page and 'value="preview"' in page and 'value="run"' in page


def test_preview_shows_diff_and_alerts_and_changes_nothing(op_client, catalogue, operator):
    before = snapshot()
    response = op_client.post("/pipelines/", {"source": json.dumps(SPEC), "action": "preview"})
    run = PipelineRun.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/pipelines/runs/{run.pk}/"
    assert run.status == "previewed" and run.dry_run and run.user == operator
    assert snapshot() == before and not PriceHistory.objects.exists()
    page = op_client.get(response["Location"]).content.decode()
    diff = re.search(r'<table id="diff">(.*?)</table>', page, re.S).group(1)
    cells = [re.sub(r"<[^>]+>", "", c).strip() for c in re.findall(r"<td[^>]*>(.*?)</td>", diff)]
    assert cells[:7] == ["LAP-1", "updated", "price", "999.00", "899.00", "stock", "10"]
    assert "MOU-1" in cells
    alerts = re.search(r'<table id="preview-alerts">(.*?)</table>', page, re.S).group(1)
    assert "LAP-1" in alerts and ">2<" in alerts
    assert f'action="/pipelines/runs/{run.pk}/run"' in page


def test_run_for_real_after_preview(op_client, catalogue):
    op_client.post("/pipelines/", {"source": json.dumps(SPEC), "action": "preview"})
    preview = PipelineRun.objects.get()
    response = op_client.post(f"/pipelines/runs/{preview.pk}/run")
    run = PipelineRun.objects.exclude(pk=preview.pk).get()
    assert response["Location"] == f"/pipelines/runs/{run.pk}/"
    assert run.status == "succeeded" and not run.dry_run
    assert snapshot() == [("LAP-1", Decimal("899.00"), 2), ("MOU-1", Decimal("19.90"), 45)]
    history = PriceHistory.objects.get()
    assert history.source == f"pipeline:{run.pk}" and history.changed_by.username == "operator"
    assert StockAlert.objects.filter(sku="LAP-1", resolved_at=None).exists()
    page = op_client.get(response["Location"]).content.decode()
    assert "1 price change, 1 alert opened, 0 resolved." in page
    assert re.search(r'<table id="result-alerts">.*LAP-1', page, re.S)
    # A run that is not a preview cannot be "committed" again.
    again = op_client.post(f"/pipelines/runs/{run.pk}/run", follow=True)
    assert "only a preview can be run" in again.content.decode()
    assert PipelineRun.objects.count() == 2


def test_run_button_runs_directly(op_client, catalogue):
    response = op_client.post("/pipelines/", {"source": json.dumps(SPEC), "action": "run"})
    run = PipelineRun.objects.get()
    assert run.status == "succeeded" and response["Location"] == f"/pipelines/runs/{run.pk}/"
    assert Product.objects.get(sku="LAP-1").price == Decimal("899.00")


def test_csv_upload_becomes_an_upsert(op_client, catalogue):
    feed = b"sku,name,price,stock\nLAP-1,Laptop,949.00,10\nNEW-1,Dock,120.00,3\n"
    upload = SimpleUploadedFile("feed.csv", feed, content_type="text/csv")
    response = op_client.post(
        "/pipelines/", {"upload": upload, "name": "supplier feed", "action": "preview"}
    )
    run = PipelineRun.objects.get()
    assert run.spec["steps"] == [{"op": "upsert_products", "csv": feed.decode()}]
    assert run.name == "supplier feed" and run.status == "previewed"
    page = op_client.get(response["Location"]).content.decode()
    assert "2 products would change" in page and "created" in page and "NEW-1" in page
    assert not Product.objects.filter(sku="NEW-1").exists()


def test_pasted_csv_and_json_file(op_client, catalogue):
    op_client.post(
        "/pipelines/", {"source": "sku,name,price\nMOU-1,Mouse,17.00\n", "action": "run"}
    )
    assert Product.objects.get(sku="MOU-1").price == Decimal("17.00")
    upload = SimpleUploadedFile("spec.json", json.dumps(SPEC).encode())
    op_client.post("/pipelines/", {"upload": upload, "action": "run"})
    assert Product.objects.get(sku="LAP-1").stock == 2


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({}, "Paste a spec or CSV, or upload a file."),
        ({"source": '{"steps": [}'}, "Invalid JSON at line 1, column 12"),
        ({"source": "[1, 2]\n"}, "must be a JSON object"),
    ],
)
def test_bad_input_is_refused_on_the_form(op_client, data, message):
    response = op_client.post("/pipelines/", {**data, "action": "preview"})
    assert response.status_code == 400
    assert message in response.content.decode().replace("&#x27;", "'")
    assert PipelineRun.objects.count() == 0


def test_invalid_spec_shows_located_errors_and_changes_nothing(op_client, catalogue):
    before = snapshot()
    spec = {"steps": [{"op": "adjust_stock", "deltas": {"LAP-1": -50}}]}
    response = op_client.post(
        "/pipelines/", {"source": json.dumps(spec), "action": "run"}, follow=True
    )
    page = response.content.decode()
    assert "The run failed: nothing was changed" in page
    assert "<code>steps.0.deltas.LAP-1</code>" in page
    assert snapshot() == before
    spec = {"steps": [{"op": "teleport"}]}
    page = op_client.post(
        "/pipelines/", {"source": json.dumps(spec), "action": "run"}, follow=True
    ).content.decode()
    assert "The spec is invalid: nothing ran" in page and "unknown op" in page


def test_edit_and_retry_prefills_the_spec(op_client, catalogue):
    op_client.post("/pipelines/", {"source": json.dumps(SPEC), "action": "preview"})
    run = PipelineRun.objects.get()
    page = op_client.get(f"/pipelines/?from={run.pk}").content.decode()
    textarea = re.search(r"<textarea[^>]*>(.*?)</textarea>", page, re.S).group(1)
    prefilled = json.loads(textarea.replace("&quot;", '"'))
    assert prefilled == SPEC


def test_other_users_runs_are_not_visible(op_client, catalogue):
    other = PipelineRun.objects.create(spec=SPEC, status="previewed", dry_run=True)
    assert op_client.get(f"/pipelines/runs/{other.pk}/").status_code == 404
    assert op_client.post(f"/pipelines/runs/{other.pk}/run").status_code == 404
