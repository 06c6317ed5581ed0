"""Errors raised before a request reaches the API still answer JSON under /api/."""

import pytest


@pytest.mark.django_db
def test_disallowed_host_under_api_is_json(client):
    response = client.get("/api/products", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response.json() == {"detail": "Bad request.", "errors": []}


@pytest.mark.django_db
def test_pages_outside_api_keep_html_errors(client):
    response = client.get("/no-such-page/", HTTP_HOST="evil.example.com")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("text/html")
