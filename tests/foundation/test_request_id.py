"""Every response carries a request id; every 500 is logged with its path and that id, and
the error page or JSON names it (issue 12, finding 8)."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client

from tests.production import run_with_production_settings

URLCONF = "tests.foundation.raising_urls"


@pytest.fixture
def with_request_ids(settings):
    settings.ROOT_URLCONF = URLCONF
    settings.MIDDLEWARE = ["app.middleware.RequestIdMiddleware", *settings.MIDDLEWARE]


def test_every_response_has_an_id_and_a_sane_incoming_one_is_kept(with_request_ids):
    client = Client()
    first, second = client.get("/fine/"), client.get("/fine/")
    assert re.fullmatch(r"[0-9a-f]{32}", first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]
    kept = client.get("/fine/", HTTP_X_REQUEST_ID="4f2a9c0e1b7d4e5f8a6b3c2d1e0f9a8b")
    assert kept["X-Request-ID"] == "4f2a9c0e1b7d4e5f8a6b3c2d1e0f9a8b"
    for insane in ("a b", "x" * 129, "id\x00", "<script>", ""):
        replaced = client.get("/fine/", HTTP_X_REQUEST_ID=insane)
        assert re.fullmatch(r"[0-9a-f]{32}", replaced["X-Request-ID"]), insane


def test_a_page_500_is_logged_with_path_and_id_and_the_page_shows_the_id(with_request_ids, caplog):
    client = Client(raise_request_exception=False)
    response = client.get("/boom/", HTTP_X_REQUEST_ID="req-page-1")
    assert response.status_code == 500
    assert response["X-Request-ID"] == "req-page-1"
    assert b'<code id="request-id">req-page-1</code>' in response.content
    [record] = [r for r in caplog.records if r.name == "django.request"]
    assert record.levelname == "ERROR"
    assert record.request.path == "/boom/"
    assert record.request.request_id == "req-page-1"
    assert record.exc_info is not None


def test_an_api_500_carries_the_id_in_its_json(with_request_ids):
    response = Client(raise_request_exception=False).get("/api/boom", HTTP_X_REQUEST_ID="req-api-1")
    assert response.status_code == 500
    assert response["X-Request-ID"] == "req-api-1"
    assert response.json() == {
        "detail": "Internal server error.",
        "errors": [],
        "request_id": "req-api-1",
    }


PRODUCTION_PROBE = """
import json, django
django.setup()
from django.test import Client
from django.test.utils import override_settings
with override_settings(ROOT_URLCONF="tests.foundation.raising_urls"):
    client = Client(raise_request_exception=False)
    out = {}
    for path, rid in (("/boom/", "prod-page-1"), ("/api/boom", "prod-api-1")):
        r = client.get(path, secure=True, HTTP_X_REQUEST_ID=rid)
        out[path] = [r.status_code, r["X-Request-ID"], r.content.decode()]
print(json.dumps(out))
"""


def test_production_settings_log_every_500_to_stderr_with_path_and_request_id():
    """The real production settings (middleware order and LOGGING), in a process of their
    own: stderr gets one line per 500 naming the path and the id, with the traceback."""
    proc = run_with_production_settings(
        PRODUCTION_PROBE,
        ALLOWED_HOSTS="testserver",
        DATABASE_URL="sqlite:///:memory:",
        CACHE_URL="locmemcache://",
    )
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    status, header, body = out["/boom/"]
    assert (status, header) == (500, "prod-page-1")
    assert "prod-page-1" in body
    status, header, body = out["/api/boom"]
    assert (status, header) == (500, "prod-api-1")
    assert json.loads(body)["request_id"] == "prod-api-1"

    lines = proc.stderr.splitlines()
    page = [line for line in lines if "django.request" in line and "/boom/" in line]
    assert len(page) == 1, proc.stderr
    assert "ERROR" in page[0]
    assert "path=/boom/ request_id=prod-page-1" in page[0]
    assert "RuntimeError: page failed on purpose" in proc.stderr
    api = [line for line in lines if "app.api.errors" in line]
    assert len(api) == 1, proc.stderr
    assert "path=/api/boom request_id=prod-api-1" in api[0]
    assert "RuntimeError: api failed on purpose" in proc.stderr
