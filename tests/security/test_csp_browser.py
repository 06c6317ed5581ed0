"""Finding 11 (c) of issue 12: real Chromium reports no Content-Security-Policy violation
on the back-office pages, the admin and the API docs (Swagger UI, served locally)."""

from __future__ import annotations

import pytest

from app.models import PipelineRun
from tests.browser.conftest import browser, log_in, page, staff_user  # noqa: F401 (fixtures)
from tests.factories import ProductFactory

pytestmark = pytest.mark.browser

COLLECT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__csp.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""


def test_no_page_violates_the_policy(page, staff_user):  # noqa: F811
    product = ProductFactory(sku="CSP-1", stock=2, low_stock_threshold=5)
    product.price = product.price + 1
    product.save()
    run = PipelineRun.objects.create(
        name="r", spec={}, user=staff_user, status="running", rows_total=10, rows_done=4
    )
    console = []
    page.on("console", lambda message: console.append(message.text))
    page.add_init_script(COLLECT)
    log_in(page, staff_user)
    urls = [
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
    violations = {}
    for url in urls:
        page.goto(url)
        page.wait_for_load_state("networkidle")
        found = page.evaluate("window.__csp")
        if found:
            violations[url] = found
    assert violations == {}
    assert not [text for text in console if "Content Security Policy" in text]
    # The pages still work under the policy: the progress bar is drawn by the script, and
    # the API docs rendered the operations.
    page.goto("/")
    width = f"document.querySelector(`tr[data-run='{run.pk}'] .bar`).style.width"
    page.wait_for_function(f"() => {width} === '40%'")  # a function: no eval() under the CSP
    page.goto("/api/docs")
    page.locator(".opblock").first.wait_for()
    assert page.locator(".opblock").count() > 10
