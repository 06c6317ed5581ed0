"""Import profiles, previews with fingerprints and rejected rows over the HTTP API."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
from django.utils import timezone

from app.models import ImportProfile, PipelineRun, Product
from app.services.retention import RetentionPolicy, prune
from app.services.tokens import create_token
from tests.api.conftest import ApiClient, user_with
from tests.feeds import fixtures

pytestmark = pytest.mark.django_db

PROFILE_PERMS = (
    "view_importprofile",
    "add_importprofile",
    "change_importprofile",
    "delete_importprofile",
)


def client_for(*perms: str) -> ApiClient:
    user = user_with(*perms)
    return ApiClient(create_token(user, "t")[1])


def test_profile_crud_and_located_errors():
    api = client_for(*PROFILE_PERMS)
    body = {**fixtures.GERMAN}
    created = api.post("/api/import-profiles", body)
    assert created.status_code == 201, created.json()
    pid = created.json()["id"]
    assert created.json()["columns"]["VK-Preis"] == "price"
    assert api.get(f"/api/import-profiles/{pid}").json()["encoding"] == "cp1252"
    listed = api.get("/api/import-profiles").json()
    assert listed["count"] == 1
    # a duplicate mapping, a bad factor and a taken name: every error located, nothing saved
    bad = api.post(
        "/api/import-profiles",
        {
            **body,
            "columns": {**body["columns"], "Preis2": "price"},
            "price_factor": "0",
        },
    )
    assert bad.status_code == 422
    locs = {tuple(e["loc"]) for e in bad.json()["errors"]}
    assert ("body", "payload", "columns", "Preis2") in locs
    assert ("body", "payload", "price_factor") in locs
    assert ("body", "payload", "name") in locs
    unknown = api.post("/api/import-profiles", {**body, "name": "x", "columns": {"A": "prize"}})
    assert unknown.status_code == 422
    patched = api.patch(f"/api/import-profiles/{pid}", {"header_row": 4})
    assert patched.status_code == 200 and patched.json()["header_row"] == 4
    refused = api.patch(f"/api/import-profiles/{pid}", {"thousands_separator": ","})
    assert refused.status_code == 422  # ',' is the decimal separator too
    assert ImportProfile.objects.get(pk=pid).thousands_separator == "."
    assert api.delete(f"/api/import-profiles/{pid}").status_code == 204
    assert api.get(f"/api/import-profiles/{pid}").status_code == 404


def test_profile_permissions():
    api = client_for("view_importprofile")
    assert api.get("/api/import-profiles").status_code == 200
    response = api.post("/api/import-profiles", fixtures.GERMAN)
    assert response.status_code == 403
    assert set(response.json()) == {"detail", "errors"}
    assert ApiClient(None).get("/api/import-profiles").status_code == 401


def test_preview_then_apply_with_fingerprint_and_rejected_rows_csv():
    fixtures.xlsx_profile()
    api = client_for("run_pipeline")
    Product.objects.create(sku="X-1", name="Kabel", price="4.00", stock=10)
    spec = {
        "name": "xlsx feed",
        "policy": "skip_invalid_rows",
        "steps": [
            {
                "op": "upsert_products",
                "profile": "lieferant-xlsx",
                "xlsx": fixtures.b64(fixtures.mixed_xlsx()),
            }
        ],
    }
    preview = api.post("/api/pipelines/execute", {**spec, "dry_run": True}).json()
    assert preview["status"] == "previewed"
    assert preview["totals"]["created"] == 3 and preview["totals"]["updated"] == 1
    assert preview["totals"]["rejected"] == 1
    assert not Product.objects.filter(sku="X-2").exists()
    diff = api.get(f"/api/pipelines/runs/{preview['run_id']}/diff", {"page_size": 2}).json()
    assert diff["count"] == 1 + 3 * 4  # X-1's price; 4 fields of each new product
    assert len(diff["items"]) == 2
    x1 = [
        r
        for r in api.get(f"/api/pipelines/runs/{preview['run_id']}/diff").json()["items"]
        if r["sku"] == "X-1"
    ]
    assert x1 == [
        {"sku": "X-1", "action": "updated", "field": "price", "before": "4.00", "after": "4.50"}
    ]
    rejected = api.get(f"/api/pipelines/runs/{preview['run_id']}/rejected").json()
    assert rejected["items"][0]["row"] == 6 and rejected["items"][0]["column"] == "Preis"

    # someone changes a product the preview read: the apply is refused (409), nothing done
    Product.objects.filter(sku="X-1").update(stock=3)
    stale = api.post("/api/pipelines/execute", {**spec, "fingerprint": preview["fingerprint"]})
    assert stale.status_code == 409
    assert stale.json()["errors"][0]["loc"] == ["fingerprint"]
    assert not Product.objects.filter(sku="X-2").exists()

    again = api.post("/api/pipelines/execute", {**spec, "dry_run": True}).json()
    assert again["fingerprint"] != preview["fingerprint"]
    # a different spec with the same fingerprint is refused too
    other = {**spec, "policy": "all_or_nothing", "fingerprint": again["fingerprint"]}
    assert api.post("/api/pipelines/execute", other).status_code in (400, 409)
    applied = api.post("/api/pipelines/execute", {**spec, "fingerprint": again["fingerprint"]})
    assert applied.status_code == 200, applied.json()
    assert applied.json()["totals"]["created"] == 3
    assert Product.objects.get(sku="X-2").price == fixtures.Decimal("3.20")

    response = api.get(f"/api/pipelines/runs/{applied.json()['run_id']}/rejected.csv")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert "rejected.csv" in response["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode("utf-8-sig"))))
    assert rows[0][:4] == ["row", "column", "value", "message"]
    assert rows[1][:3] == ["6", "Preis", "n/a"]


def test_rejected_csv_neutralises_formulas():
    ImportProfile.objects.create(name="p", columns={"sku": "sku", "name": "name", "price": "price"})
    api = client_for("run_pipeline")
    text = 'sku,name,price\nA,ok,1\n=cmd|calc,"=HYPERLINK(""x"")",@SUM(1)\n'
    result = api.post(
        "/api/pipelines/execute",
        {
            "policy": "skip_invalid_rows",
            "steps": [{"op": "upsert_products", "profile": "p", "csv": text}],
        },
    ).json()
    assert result["totals"]["rejected"] == 1
    body = b"".join(
        api.get(f"/api/pipelines/runs/{result['run_id']}/rejected.csv").streaming_content
    ).decode("utf-8-sig")
    rows = list(csv.reader(io.StringIO(body)))
    for cell in rows[1]:
        assert not cell.startswith(("=", "+", "-", "@", "\t", "\r")), rows[1]
    assert "'=cmd|calc" in rows[1]


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"columns": {"A\x00": "sku", "B": "name", "C": "price"}}, "columns"),
        ({"price_factor": "0.0000001"}, "price_factor"),
        ({"price_factor": "1e400"}, "price_factor"),
        ({"defaults": {"stock": 1e300}}, "defaults"),
        ({"defaults": {"name": ["a"]}}, "defaults"),
        ({"quotechar": "\x00"}, "quotechar"),
        ({"sheet": "a\x00"}, "sheet"),
    ],
)
def test_hostile_profile_input_is_a_located_error(change, field):
    """422 naming the field (400 from the input guard for NUL, located as well)."""
    api = client_for("add_importprofile")
    body = {"name": "h", "columns": {"A": "sku", "B": "name", "C": "price"}, **change}
    response = api.post("/api/import-profiles", body)
    assert response.status_code in (400, 422), response.content
    assert any(field in e["loc"] for e in response.json()["errors"]), response.json()
    assert not ImportProfile.objects.exists()


def test_rejected_rows_and_diff_of_a_pruned_run_answer_410_not_empty(client):
    """Retention removes a run's result; its rejected rows are then gone, which an empty
    CSV would hide (README, Retention)."""
    ImportProfile.objects.create(name="p", columns={"sku": "sku", "name": "name", "price": "price"})
    api = client_for("run_pipeline")
    text = "sku,name,price\nA,ok,1\nB,bad,n/a\n"
    spec = {"policy": "skip_invalid_rows", "steps": [{"op": "upsert_products", "profile": "p"}]}
    spec["steps"][0]["csv"] = text
    run_id = api.post("/api/pipelines/execute", spec).json()["run_id"]
    paths = [f"/api/pipelines/runs/{run_id}/{tail}" for tail in ("rejected", "rejected.csv")]
    assert [api.get(path).status_code for path in paths] == [200, 200]

    PipelineRun.objects.filter(pk=run_id).update(finished_at=timezone.now() - timedelta(days=91))
    policy = RetentionPolicy.from_settings(run_payload_days=90)
    assert prune(policy)["pipeline run payloads"] == 1

    for path in [*paths, f"/api/pipelines/runs/{run_id}/diff"]:
        response = api.get(path)
        assert response.status_code == 410, (path, response.status_code)
        assert "removed by the retention policy" in response.json()["detail"]
    client.force_login(PipelineRun.objects.get(pk=run_id).user)
    page_csv = client.get(f"/pipelines/runs/{run_id}/rejected.csv")
    assert page_csv.status_code == 410
    assert "removed by the retention policy" in page_csv.content.decode()
