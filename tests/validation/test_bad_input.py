"""Issue 12 finding 7: bad input is a clear 4xx, never a 500.

* NUL or another control character in a pipeline row, a CSV cell, an API body, a URL path or
  a query string: 400 naming the field, row or parameter; nothing written; a pipeline run is
  still recorded (PostgreSQL refuses NUL in text, so this matters most there).
* A CSV field over the csv module's size limit: 400 with its line and column; the run is
  recorded as failed, not left pending.
* JSON nested deeper than ``MAX_JSON_DEPTH`` (32): 400 on the API, the execute view and the
  pipeline page.
* A body over ``DATA_UPLOAD_MAX_MEMORY_SIZE``: 413 on the API, the execute view and pages.
"""

from __future__ import annotations

import csv
import json
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from app.core.inputs import MAX_JSON_DEPTH
from app.models import PipelineRun, Product
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
EXECUTE = "/api/pipelines/execute"


def execute(api, spec):
    body = spec if isinstance(spec, str) else json.dumps(spec)
    return api.client.post(EXECUTE, body, content_type="application/json", headers=api.headers)


def snapshot():
    return list(Product.objects.order_by("pk").values_list("sku", "name", "price", "stock"))


def assert_refused(response, status, loc=None):
    assert response.status_code == status, response.content
    body = response.json()
    assert body["detail"]
    if loc is not None:
        assert [e["loc"] for e in body["errors"]][:1] == [loc], body
    return body


@pytest.mark.parametrize(
    ("step", "loc"),
    [
        (
            {"op": "upsert_products", "rows": [{"sku": "N-1", "name": "a\x00b", "price": "1"}]},
            ["steps", 0, "rows", 0, "name"],
        ),
        (
            {"op": "upsert_products", "rows": [{"sku": "N\x00-1", "name": "ab", "price": "1"}]},
            ["steps", 0, "rows", 0, "sku"],
        ),
        (
            {"op": "upsert_products", "rows": [{"sku": "N-1", "name": "a\x01b", "price": "1"}]},
            ["steps", 0, "rows", 0, "name"],
        ),
        (
            {"op": "upsert_products", "csv": "sku,name,price\nN-1,ok,1\nN-2,a\x00b,1\n"},
            ["steps", 0, "csv", 3, "name"],
        ),
        (
            {"op": "upsert_products", "csv": "sku,name,price\nN-1,ok,1\nN-2,a\x1bb,1\n"},
            ["steps", 0, "csv", 3, "name"],
        ),
        (
            {"op": "upsert_products", "csv": "sku,name,price\nN-1,ok,1\nN-2,x,1\x00\n"},
            ["steps", 0, "csv", 3, "price"],
        ),
        (
            {"op": "set_prices", "prices": {"OLD\x00-1": "2.00"}},
            ["steps", 0, "prices", "OLD\ufffd-1"],
        ),
        ({"op": "delete_products", "skus": ["OLD\x00-1"]}, ["steps", 0, "skus", 0]),
    ],
)
def test_control_characters_in_a_pipeline_are_400_and_the_run_is_recorded(api, step, loc):
    ProductFactory(sku="OLD-1")
    before = snapshot()

    response = execute(api, {"name": "feed", "steps": [step]})

    body = assert_refused(response, 400, loc)
    assert snapshot() == before
    run = PipelineRun.objects.get(pk=body["run_id"])
    assert run.status == "failed" and run.error["kind"] == "invalid"
    assert run.error["errors"][0]["loc"] == loc


def test_nul_in_the_run_name_is_400_and_the_run_is_recorded(api):
    spec = {
        "name": "feed\x00",
        "mode": "a\x00",
        "steps": [{"op": "set_prices", "prices": {"A": "1"}}],
    }
    body = assert_refused(execute(api, spec), 400)
    assert ["name"] in [e["loc"] for e in body["errors"]]
    run = PipelineRun.objects.get(pk=body["run_id"])
    assert run.status == "failed" and run.name == "feed\ufffd"


def test_a_csv_field_over_the_size_limit_is_400_with_line_and_column(api):
    huge = "x" * (csv.field_size_limit() + 1)
    spec = {
        "steps": [{"op": "upsert_products", "csv": f"sku,name,price\nN-1,ok,1\nN-2,{huge},1\n"}]
    }

    body = assert_refused(execute(api, spec), 400, ["steps", 0, "csv", 3, "name"])

    assert "line 3, column name" in body["errors"][0]["msg"]
    assert "field larger than field limit" in body["errors"][0]["msg"]
    assert PipelineRun.objects.get(pk=body["run_id"]).status == "failed"
    assert not Product.objects.exists()


def test_a_csv_header_over_the_size_limit_is_400_and_the_run_is_not_left_pending(api):
    huge = "x" * (csv.field_size_limit() + 1)
    spec = {"steps": [{"op": "upsert_products", "csv": f"sku,{huge}\nN-1,ok\n"}]}

    body = assert_refused(execute(api, spec), 400, ["steps", 0, "csv"])

    assert "line 1, column #2" in body["errors"][0]["msg"]
    assert PipelineRun.objects.get(pk=body["run_id"]).status == "failed"


def test_quoted_fields_are_located_too(api):
    huge = "y" * (csv.field_size_limit() + 1)
    text = f'sku,name,price,stock\nN-1,"a, ""quoted"" name",1,2\nN-2,"b,c",1,"{huge}"\n'
    body = assert_refused(
        execute(api, {"steps": [{"op": "upsert_products", "csv": text}]}),
        400,
        ["steps", 0, "csv", 3, "stock"],
    )
    assert PipelineRun.objects.get(pk=body["run_id"]).status == "failed"


@pytest.mark.parametrize(
    ("method", "path", "body", "loc"),
    [
        ("post", "/api/products", {"sku": "N-1", "name": "a\x00b", "price": "1"}, ["body", "name"]),
        (
            "post",
            "/api/products",
            {"sku": "N-1", "name": "a\ud800b", "price": "1"},
            ["body", "name"],
        ),
        ("patch", "/api/products/OLD-1", {"name": "a\x00b"}, ["body", "name"]),
        ("post", "/api/products/OLD-1/stock", {"delta": 1, "reason": "\x00"}, ["body", "reason"]),
        ("post", "/api/auth/login", {"username": "x\x00", "password": "y"}, ["body", "username"]),
        ("post", "/api/products", {"sku\x00": "N-1"}, ["body", "sku\ufffd"]),
    ],
)
def test_nul_in_an_api_body_is_400_naming_the_field(api, method, path, body, loc):
    ProductFactory(sku="OLD-1", name="Old")
    before = snapshot()
    response = getattr(api.client, method)(
        path, json.dumps(body), content_type="application/json", headers=api.headers
    )
    assert_refused(response, 400, loc)
    assert snapshot() == before


@pytest.mark.parametrize(
    ("body", "loc_prefix"),
    [
        ({"sku": "N-1", "name": "a\x07b", "price": "1"}, ["body", "payload", "name"]),
        ({"sku": "N\t1", "name": "ab", "price": "1"}, ["body", "payload", "sku"]),
    ],
)
def test_other_control_characters_in_an_api_body_are_refused_by_the_field_rule(
    api, body, loc_prefix
):
    response = api.post("/api/products", body)
    assert response.status_code == 422
    assert response.json()["errors"][0]["loc"] == loc_prefix
    assert not Product.objects.exists()


@pytest.mark.parametrize(
    ("path", "loc"),
    [
        ("/api/products/A%00B", ["path"]),
        ("/api/products/A%00B/stock-movements", ["path"]),
        ("/api/products?sku_prefix=A%00", ["query", "sku_prefix"]),
        ("/api/products?search=a%01b", ["query", "search"]),
        ("/api/alerts?sku=A%0AB", ["query", "sku"]),
        ("/api/products?x%00=1", ["query", "x\x00"]),
    ],
)
def test_control_characters_in_api_urls_are_400(api, path, loc):
    assert_refused(api.get(path), 400, loc)


@pytest.mark.parametrize(
    "path", ["/products/A%00B/", "/products/?q=a%00b", "/?x=%00", "/pipelines/?from=1%00"]
)
def test_control_characters_in_page_urls_are_400(operator_client, path):
    response = operator_client.get(path)
    assert response.status_code == 400
    assert b"control character" in response.content or b"NUL" in response.content


def nested(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_json_deeper_than_the_limit_is_400_everywhere(api, operator_client, depth):
    deep = nested(depth)
    for path in ["/api/products", "/api/products/OLD-1/stock", "/api/auth/login", EXECUTE]:
        response = api.client.post(path, deep, content_type="application/json", headers=api.headers)
        assert_refused(response, 400, ["body"])
        assert "nested deeper than 32" in response.json()["detail"]
    page = operator_client.post("/pipelines/", {"source": deep, "action": "preview"})
    assert page.status_code == 400
    assert b"nested deeper than 32" in page.content
    assert PipelineRun.objects.count() == 0


def test_json_within_the_depth_limit_is_accepted(api):
    ProductFactory(sku="OLD-1")
    spec = {"steps": [{"op": "set_prices", "prices": {"OLD-1": "2.00"}}]}
    assert execute(api, spec).status_code == 200


@pytest.fixture
def small_limit(settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 10_000
    return 10_000


def test_a_body_over_the_limit_is_413_everywhere(api, operator_client, small_limit):
    big = json.dumps({"sku": "N-1", "name": "x" * small_limit, "price": "1"})
    for path in ["/api/products", "/api/products/OLD-1/stock", "/api/auth/login", EXECUTE]:
        response = api.client.post(path, big, content_type="application/json", headers=api.headers)
        assert_refused(response, 413)
    patch = api.client.patch(
        "/api/products/OLD-1", big, content_type="application/json", headers=api.headers
    )
    assert_refused(patch, 413)
    form = api.client.put(
        "/api/products/OLD-1",
        "a=" + "x" * small_limit,
        content_type="application/x-www-form-urlencoded",
        headers=api.headers,
    )
    assert_refused(form, 413)
    for path in ["/pipelines/", "/accounts/login/", "/admin/login/"]:
        response = operator_client.post(path, {"source": "x" * small_limit})
        assert response.status_code == 413, path
    assert not Product.objects.exists() and PipelineRun.objects.count() == 0


def test_a_body_within_the_limit_is_served(api, small_limit):
    response = api.post("/api/products", {"sku": "N-1", "name": "x" * 100, "price": "1"})
    assert response.status_code == 201


@pytest.mark.postgres
def test_nul_everywhere_on_postgresql(api, operator_client):
    """PostgreSQL refuses NUL in text and JSON: each of these used to answer 500."""
    spec = {
        "name": "n\x00",
        "steps": [{"op": "upsert_products", "csv": "sku,name,price\nA,b\x00,1\n"}],
    }
    body = assert_refused(execute(api, spec), 400)
    assert PipelineRun.objects.filter(pk=body["run_id"], status="failed").exists()
    assert operator_client.get("/products/?q=%00").status_code == 400
    assert api.get("/api/products/%00").status_code == 400
    # Pasted: the form names the field; uploaded: the run is recorded as failed.
    pasted = operator_client.post("/pipelines/", {"source": "sku,name,price\nA,b\x00,1\n"})
    assert pasted.status_code == 400 and b"Null characters are not allowed" in pasted.content
    upload = SimpleUploadedFile("feed.csv", b"sku,name,price\nA,b\x00,1\n")
    uploaded = operator_client.post("/pipelines/", {"upload": upload, "action": "run"})
    assert uploaded.status_code == 302
    run = PipelineRun.objects.latest("pk")
    assert run.status == "failed" and run.error["errors"][0]["loc"] == [
        "steps",
        0,
        "csv",
        2,
        "name",
    ]
    assert not Product.objects.exists()


def test_the_depth_check_is_linear_on_unterminated_strings(api):
    """Escaped quotes in a never-closed string: the depth scan reads them once."""
    body = '["' + '\\"' * 500_000
    started = time.monotonic()
    response = api.client.post(
        "/api/products", body, content_type="application/json", headers=api.headers
    )
    assert response.status_code == 400
    assert time.monotonic() - started < 5
