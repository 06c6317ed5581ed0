import json

import pytest
from django.db import connection
from django.test import Client

from tests.api.conftest import assert_error_shape

pytestmark = pytest.mark.django_db


def test_unknown_api_urls_are_json_404(api):
    for path in ["/api/nope", "/api/products/a/b/c", "/api/products/X/stock/extra"]:
        assert_error_shape(api.get(path), 404)
    assert_error_shape(api.post("/api/nope", {}), 404)


def test_wrong_method_is_json_405(api):
    response = api.client.put("/api/products", headers=api.headers)
    body = assert_error_shape(response, 405)
    assert "GET" in response["Allow"] and "POST" in response["Allow"]
    assert "PUT" in body["detail"]


def test_unexpected_exception_is_json_500_without_traceback(reader_api, caplog):
    """A real failure (the alerts table is gone) surfaces as the error shape, logged."""
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE app_stockalert RENAME TO app_stockalert_gone")
    response = reader_api.get("/api/alerts")
    body = assert_error_shape(response, 500)
    assert body["detail"] == "Internal server error."
    assert "app_stockalert" not in response.content.decode()
    assert "Traceback" not in response.content.decode()
    assert "Unhandled API error on GET /api/alerts" in caplog.text


def test_openapi_document_and_docs():
    client = Client()
    schema = client.get("/api/openapi.json").json()
    paths = schema["paths"]
    for path in [
        "/api/products",
        "/api/products/{sku}",
        "/api/products/{sku}/stock",
        "/api/products/{sku}/price-history",
        "/api/products/{sku}/price-at",
        "/api/alerts",
        "/api/pipelines/runs",
        "/api/pipelines/runs/{run_id}",
        "/api/pipelines/execute",
        "/api/tokens",
        "/api/tokens/{token_id}",
        "/api/auth/login",
    ]:
        assert path in paths, path
    assert set(schema["components"]["securitySchemes"]) == {"BearerToken", "SessionCookie"}
    # Every operation declares its error responses with the shared error schema.
    for path, operations in paths.items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert any(c.startswith("2") for c in codes), (method, path)
            if operation.get("security"):
                assert "401" in codes, (method, path)
            if any(p["in"] in ("path", "query") for p in operation.get("parameters", [])):
                assert "422" in codes, (method, path)
    stock = paths["/api/products/{sku}/stock"]["post"]["responses"]
    assert {"200", "201", "401", "403", "404", "409", "422"} <= set(stock)
    execute = paths["/api/pipelines/execute"]["post"]
    body = execute["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/PipelineSpec"}
    assert "steps" in schema["components"]["schemas"]["PipelineSpec"]["properties"]
    assert {"200", "202", "400", "401", "403"} <= set(execute["responses"])
    assert client.get("/api/docs").status_code == 200


def test_a_form_where_json_is_expected_is_a_client_error_not_500(django_user_model):
    """A session-authenticated multipart POST: CSRF checking parses the form before the
    operation, so the raw body is gone; the client is told to send JSON (415). A urlencoded
    body is still readable and is refused as unparseable JSON (400)."""
    admin = django_user_model.objects.create_superuser("form", "form@example.com", "pw-1-form")
    client = Client()
    client.force_login(admin)
    body = assert_error_shape(client.post("/api/products", data={"sku": "F-1"}), 415)
    assert "application/json" in body["detail"] and body["errors"][0]["loc"] == ["body"]
    urlencoded = client.post(
        "/api/products", data="sku=F-1", content_type="application/x-www-form-urlencoded"
    )
    assert_error_shape(urlencoded, 400)


def test_the_openapi_document_has_no_duplicate_keys(client):
    """JSON parsers keep the last of two equal keys; Swagger UI's YAML parser refuses the
    whole document ("duplicated mapping key"), so the docs page shows no operation."""
    duplicates = []

    def pairs(items):
        keys = [key for key, _ in items]
        duplicates.extend(key for key in set(keys) if keys.count(key) > 1)
        return dict(items)

    json.loads(client.get("/api/openapi.json").content, object_pairs_hook=pairs)
    assert duplicates == []
