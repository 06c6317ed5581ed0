"""The back-office pages of the deployed stack in Debian's Chromium: log in, dashboard,
product page, pipelines page, with the stylesheet collectstatic built (issue 12, finding 8:
pages answered 500 in production until collectstatic had run)."""

from __future__ import annotations

import pytest
from playwright.sync_api import sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS
from tests.deployed.conftest import PASSWORD


@pytest.fixture
def page(stack):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser-deps to install Chromium.")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        # The stack's certificate is self-signed (no STOCKPIPE_TLS_CERT in the stage).
        context = browser.new_context(base_url=stack.url, ignore_https_errors=True)
        page = context.new_page()
        page.set_default_timeout(20_000)
        yield page
        context.close()
        browser.close()


def test_login_dashboard_product_and_pipeline_pages(stack, accounts, page):
    operator = accounts["operator"]
    sku, name = f"E2E-PAGE-{stack.run}", f"E2E page product {stack.run}"
    ran = stack.request(
        "POST",
        "/api/pipelines/execute",
        operator["token"],
        {
            "name": f"e2e page {stack.run}",
            "steps": [
                {
                    "op": "upsert_products",
                    "rows": [{"sku": sku, "name": name, "price": "31.50", "stock": 40}],
                }
            ],
        },
    )
    assert ran.status == 200, ran.body

    responses = []
    page.on("response", lambda r: responses.append((r.url, r.status)))
    page.goto("/")
    page.wait_for_url("**/accounts/login/**")
    page.fill("#id_username", operator["username"])
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"{stack.url}/")
    assert page.locator(".who").inner_text() == operator["username"]
    assert page.get_by_text(f"e2e page {stack.run}").count() >= 1

    page.goto(f"/products/{sku}/")
    main = page.locator("main").inner_text()
    assert name in main and "31.50" in main, main

    page.goto("/pipelines/")
    assert page.locator("textarea").count() >= 1

    css = [(url, status) for url, status in responses if "/static/app/app" in url]
    assert css and all(status == 200 for _, status in css), css
    assert all(status < 500 for _, status in responses), responses
    # The stylesheet applied: the top bar is not the browser's default transparent block.
    background = page.evaluate(
        "getComputedStyle(document.querySelector('.topbar')).backgroundColor"
    )
    assert background not in ("rgba(0, 0, 0, 0)", "transparent"), background
