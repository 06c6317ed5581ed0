"""Finding 11 (c) of issue 12: a Content-Security-Policy that every page satisfies.

The policy allows scripts, styles and requests from the site only, with no inline script
or style. Checked two ways: the rendered HTML of each page has nothing the policy blocks
(here), and real Chromium reports no violation on those pages (``test_csp_browser``).
"""

from __future__ import annotations

import re

import pytest
from django.test import Client

from app.models import PipelineRun
from tests.api.conftest import user_with
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db

INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*application/json)[^>]*>", re.I)
INLINE_STYLE = re.compile(r"<style\b|\sstyle=", re.I)
EVENT_HANDLER = re.compile(r"\son[a-z]+=", re.I)
EXTERNAL = re.compile(r"""(?:src|href)=["']https?://""", re.I)


def policy(response) -> dict[str, list[str]]:
    header = response["Content-Security-Policy"]
    directives = [part.strip().split() for part in header.split(";") if part.strip()]
    return {d[0]: d[1:] for d in directives}


@pytest.fixture
def boss(db):
    return user_with("run_pipeline", username="boss", is_staff=True, is_superuser=True)


def csp_pages(user) -> list[str]:
    """Every kind of page, with the data that makes each render its charts and bars; the
    browser test (test_csp_browser.py) walks the same list."""
    product = ProductFactory(sku="CSP-1", stock=2, low_stock_threshold=5)
    product.price = product.price + 1
    product.save()
    run = PipelineRun.objects.create(
        name="r", spec={}, user=user, status="running", rows_total=10, rows_done=5
    )
    return [
        "/",
        "/products/",
        "/products/CSP-1/",
        "/pipelines/",
        f"/pipelines/runs/{run.pk}/",
        "/admin/",
        "/admin/app/product/",
        f"/admin/app/product/{product.pk}/change/",
        "/api/docs",
    ]


@pytest.fixture
def pages(boss) -> list[str]:
    return csp_pages(boss)


def test_policy_is_strict():
    rules = policy(Client().get("/accounts/login/"))
    assert rules["default-src"] == ["'self'"]
    assert rules["script-src"] == ["'self'"] and rules["style-src"] == ["'self'"]
    assert rules["object-src"] == ["'none'"] and rules["frame-ancestors"] == ["'none'"]
    assert "'unsafe-inline'" not in str(rules)


def test_pages_have_nothing_the_policy_blocks(boss, pages):
    client = Client()
    client.force_login(boss)
    anonymous = Client().get("/accounts/login/")
    for url, response in [("/accounts/login/", anonymous), *[(u, client.get(u)) for u in pages]]:
        assert response.status_code == 200, url
        assert "Content-Security-Policy" in response, url
        html = response.content.decode()
        for name, pattern in [
            ("inline script", INLINE_SCRIPT),
            ("inline style", INLINE_STYLE),
            ("event handler attribute", EVENT_HANDLER),
            ("external script or style", EXTERNAL),
        ]:
            found = pattern.search(html)
            assert found is None, f"{url}: {name}: {html[found.start() : found.start() + 120]}"
