"""Playwright driving Debian's Chromium against pytest-django's live server.

Playwright's sync API keeps an asyncio loop running in the test's thread, which trips
Django's async-safety check on the test's own (plain, synchronous) ORM calls. The check is
relaxed only while a browser is open, so every other test keeps it.
"""

import base64
import os
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission

from tests.factories import UserFactory

os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

from playwright.sync_api import Page, sync_playwright

CHROMIUM = Path(os.environ.get("STOCKPIPE_CHROMIUM", "/usr/bin/chromium"))
SCREENSHOTS = Path(__file__).resolve().parents[2] / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "pw-for-tests-1"


@pytest.fixture
def browser(monkeypatch):
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: run scripts/browser-deps to install Chromium.")
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser, live_server):
    context = browser.new_context(base_url=live_server.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def shoot(request):
    """Save a full-page screenshot as a test artifact and return its path."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)

    def take(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{request.node.name}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def staff_user(transactional_db):
    user = UserFactory(username="backoffice", is_staff=True, is_superuser=True)
    return user


@pytest.fixture
def operator(transactional_db):
    user = UserFactory(username="operator")
    user.user_permissions.add(Permission.objects.get(codename="run_pipeline"))
    return user


def log_in(page: Page, user, next_url: str = "/") -> None:
    page.goto(f"/accounts/login/?next={next_url}")
    page.fill("#id_username", user.username)
    page.fill("#id_password", PASSWORD)
    page.click("button[type=submit]")
    page.wait_for_url(f"**{next_url}")


def coloured_pixels(page: Page, png: bytes, rgb: tuple[int, int, int], tolerance: int = 40) -> int:
    """Count pixels of roughly ``rgb`` in a PNG, decoded by the browser itself."""
    return page.evaluate(
        """async ([data, rgb, tol]) => {
            const img = new Image();
            img.src = "data:image/png;base64," + data;
            await img.decode();
            const canvas = document.createElement("canvas");
            canvas.width = img.width; canvas.height = img.height;
            const ctx = canvas.getContext("2d");
            ctx.drawImage(img, 0, 0);
            const px = ctx.getImageData(0, 0, img.width, img.height).data;
            let n = 0;
            for (let i = 0; i < px.length; i += 4) {
                if (Math.abs(px[i] - rgb[0]) <= tol && Math.abs(px[i + 1] - rgb[1]) <= tol
                    && Math.abs(px[i + 2] - rgb[2]) <= tol) n++;
            }
            return n;
        }""",
        [base64.b64encode(png).decode(), list(rgb), tolerance],
    )
