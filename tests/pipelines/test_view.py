"""POST /api/pipelines/execute through Django's real request stack (middleware, CSRF, auth)."""

import copy
import json
from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse

from app.models import PipelineRun, Product
from app.pipelines.selectors import run_status
from app.services.tokens import create_token
from tests.factories import ProductFactory, UserFactory

from .conftest import EXAMPLE

pytestmark = pytest.mark.django_db
URL = "/api/pipelines/execute"


def post(client, body, **headers):
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return client.post(URL, data=data, content_type="application/json", headers=headers)


@pytest.fixture
def bearer(operator):
    _, raw = create_token(operator, "ci")
    return {"Authorization": f"Bearer {raw}"}


def test_url_name_and_view_class():
    assert reverse("execute-pipeline") == URL


def test_unauthenticated_gets_401_json(client):
    response = post(client, EXAMPLE)
    assert response.status_code == 401
    assert response.json() == {
        "detail": "Authentication required (session or Bearer token).",
        "errors": [],
    }
    assert not PipelineRun.objects.exists()


def test_bad_token_gets_401(client):
    assert post(client, EXAMPLE, Authorization="Bearer sp_nope_nope").status_code == 401


def test_user_without_permission_gets_403(client):
    _, raw = create_token(UserFactory(), "ci")
    response = post(client, EXAMPLE, Authorization=f"Bearer {raw}")
    assert response.status_code == 403
    assert "run_pipeline" in response.json()["detail"]


def test_bearer_token_runs_sync_pipeline_without_csrf(bearer, operator):
    ProductFactory(sku="OLD-9")
    client = Client(enforce_csrf_checks=True)
    response = post(client, copy.deepcopy(EXAMPLE), **bearer)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "succeeded"
    assert body["totals"]["created"] == 2
    assert PipelineRun.objects.get(pk=body["run_id"]).user == operator
    assert Product.objects.get(sku="LAP-1").price == Decimal("809.10")


def test_session_user_must_pass_csrf(operator):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator)
    spec = {
        "steps": [{"op": "upsert_products", "rows": [{"sku": "S-1", "name": "S", "price": "1"}]}]
    }
    refused = post(client, spec)
    assert refused.status_code == 403
    assert refused.json()["detail"].startswith("CSRF verification failed")
    assert not Product.objects.exists()

    client.get("/admin/login/")  # sets the csrftoken cookie
    token = client.cookies["csrftoken"].value
    accepted = post(client, spec, **{"X-CSRFToken": token})
    assert accepted.status_code == 200, accepted.content
    assert Product.objects.filter(sku="S-1").exists()


def test_invalid_json_and_invalid_spec_get_400_with_locations(client, bearer):
    assert post(client, "{not json", **bearer).status_code == 400
    response = post(
        client,
        {
            "steps": [
                {"op": "set_prices", "prices": {"A": "1"}},
                {"op": "adjust_stock", "deltas": {"LAP-1": 1.5}},
            ]
        },
        **bearer,
    )
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "Invalid pipeline spec."
    assert [e["loc"] for e in body["errors"]] == [["steps", 1, "deltas", "LAP-1"]]
    assert PipelineRun.objects.get(pk=body["run_id"]).status == "failed"


def test_csv_file_is_refused_over_http(client, bearer, tmp_path):
    (tmp_path / "feed.csv").write_text("sku,name,price\nA,B,1\n")
    response = post(
        client,
        {"steps": [{"op": "upsert_products", "csv_file": str(tmp_path / "feed.csv")}]},
        **bearer,
    )
    assert response.status_code == 400
    assert response.json()["errors"][0]["loc"] == ["steps", 0, "csv_file"]
    assert not Product.objects.exists()


def test_business_failure_gets_422_naming_step_and_item(client, bearer):
    ProductFactory(sku="LAP-1", stock=3)
    response = post(
        client,
        {
            "steps": [
                {"op": "set_prices", "prices": {"LAP-1": "5.00"}},
                {"op": "set_stock", "stock": {"LAP-1": 10}},
                {"op": "set_prices", "prices": {"LAP-1": "6.00"}},
                {"op": "adjust_stock", "deltas": {"LAP-1": -11}},
            ]
        },
        **bearer,
    )
    assert response.status_code == 422
    body = response.json()
    assert body["errors"] == [
        {
            "loc": ["steps", 3, "deltas", "LAP-1"],
            "msg": "step 3 (adjust_stock): stock of LAP-1 would go negative: 10 -11 = -1",
        }
    ]
    product = Product.objects.get()
    assert (product.price, product.stock) == (Decimal("10.00"), 3)


def test_async_run_returns_202_and_runs_in_the_worker(
    client, bearer, operator, django_capture_on_commit_callbacks, run_worker
):
    ProductFactory(sku="A-1", price=Decimal("10.00"))
    spec = {
        "mode": "async",
        "steps": [{"op": "adjust_prices", "select": {"all": True}, "percent": "10"}],
    }
    with django_capture_on_commit_callbacks(execute=True):
        response = post(client, spec, **bearer)
    assert response.status_code == 202
    body = response.json()
    assert body == {
        "run_id": body["run_id"],
        "status": "pending",
        "status_url": f"/api/pipelines/runs/{body['run_id']}",
    }
    assert response["Location"] == body["status_url"]
    assert Product.objects.get().price == Decimal("10.00")  # not yet

    run_worker()

    assert Product.objects.get().price == Decimal("11.00")
    status = run_status(PipelineRun.objects.get(pk=body["run_id"]))
    assert status["status"] == "succeeded"
    assert (
        status["steps_done"],
        status["steps_total"],
        status["rows_done"],
        status["rows_total"],
    ) == (
        1,
        1,
        1,
        1,
    )
    assert status["result"]["price_changes"] == [
        {"step": 0, "sku": "A-1", "old": "10.00", "new": "11.00"}
    ]
    assert status["started_at"] and status["finished_at"]


@pytest.mark.django_db
def test_a_json_body_that_is_not_an_object_is_a_located_400(client):
    from django.contrib.auth.models import Permission, User

    user = User.objects.create_user("fuzzer", "", "pw-for-tests-1")
    user.user_permissions.add(Permission.objects.get(codename="run_pipeline"))
    client.force_login(user)
    for body in ('"AAA"', "[1, 2]", "42", "null"):
        response = client.post("/api/pipelines/execute", body, content_type="application/json")
        assert response.status_code == 400, (body, response.content)
        payload = response.json()
        assert set(payload) >= {"detail", "errors"} and payload["errors"][0]["loc"] == []
