"""Issue 12 finding 11 (BOM): CSV text that starts with a UTF-8 byte order mark (as
spreadsheets write it) is accepted however it enters: pasted, uploaded, or in an API spec."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from app.models import PipelineRun, Product

pytestmark = pytest.mark.django_db

CSV = "sku,name,price,stock\nBOM-1,Mouse,19.90,40\n"
BOM = "\ufeff"


def test_pasted_csv_with_a_bom(operator_client):
    response = operator_client.post("/pipelines/", {"source": BOM + CSV, "action": "run"})
    assert response.status_code == 302
    assert PipelineRun.objects.get().status == "succeeded"
    assert Product.objects.get().sku == "BOM-1"


def test_uploaded_csv_with_a_bom(operator_client):
    upload = SimpleUploadedFile("feed.csv", (BOM + CSV).encode())
    response = operator_client.post("/pipelines/", {"upload": upload, "action": "run"})
    assert response.status_code == 302
    assert PipelineRun.objects.get().status == "succeeded"
    assert Product.objects.get().sku == "BOM-1"


def test_pasted_json_spec_with_a_bom(operator_client):
    spec = {"steps": [{"op": "upsert_products", "csv": CSV}]}
    response = operator_client.post(
        "/pipelines/", {"source": BOM + json.dumps(spec), "action": "run"}
    )
    assert response.status_code == 302
    assert Product.objects.get().sku == "BOM-1"


def test_csv_with_a_bom_in_an_api_spec(api):
    spec = {"steps": [{"op": "upsert_products", "csv": BOM + CSV}]}
    response = api.client.post(
        "/api/pipelines/execute",
        json.dumps(spec),
        content_type="application/json",
        headers=api.headers,
    )
    assert response.status_code == 200, response.content
    assert Product.objects.get().sku == "BOM-1"
