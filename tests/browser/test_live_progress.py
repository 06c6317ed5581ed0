"""A real pipeline run's progress moving on the dashboard while the run is in progress.

PostgreSQL only: there the engine writes progress through a second connection while the
run's transaction is open (SQLite has a single writer, so progress appears at the end).
The run is held at two points through the engine's ``on_progress`` hook, so the test sees
each state for sure instead of racing a fast run.
"""

import threading
import time

import pytest
from django.db import connections

from app.models import PipelineRun
from app.pipelines.service import process_pipeline
from tests.browser.conftest import log_in
from tests.factories import ProductFactory

pytestmark = [pytest.mark.browser, pytest.mark.postgres]

STEPS = 4


def bar_width(run_id: int) -> str:
    return f"document.querySelector(`tr[data-run='{run_id}'] .bar`).style.width"


def test_dashboard_follows_a_running_pipeline(page, staff_user, shoot):
    for i in range(STEPS):
        ProductFactory(sku=f"P-{i}", stock=50)
    spec = {
        "name": "held run",
        "steps": [{"op": "set_stock", "stock": {f"P-{i}": 30}} for i in range(STEPS)],
    }
    started, go, halfway, finish = (threading.Event() for _ in range(4))

    def on_progress(run):
        if not started.is_set():
            started.set()
            go.wait(30)
        elif run.rows_done >= 2 and not halfway.is_set():
            time.sleep(1.1)  # the engine writes progress at most once a second, after this hook
            halfway.set()
        elif halfway.is_set():
            finish.wait(30)

    def run_pipeline():
        try:
            process_pipeline(spec, user=staff_user, on_progress=on_progress)
        finally:
            connections.close_all()

    worker = threading.Thread(target=run_pipeline, daemon=True)
    worker.start()
    try:
        assert started.wait(30)
        run = PipelineRun.objects.get(name="held run")
        log_in(page, staff_user)
        assert page.get_attribute(f'tr[data-run="{run.pk}"]', "data-status") == "running"
        assert page.evaluate(bar_width(run.pk)) == "0%"
        go.set()
        # Functions, not bare expressions: Playwright polls an expression with eval(), which
        # the pages' Content-Security-Policy forbids.
        page.wait_for_function(
            f"() => !['0%', '100%'].includes({bar_width(run.pk)})", timeout=20_000
        )
        assert page.text_content(f'tr[data-run="{run.pk}"] [data-role=status]') == "running"
        page.wait_for_timeout(600)  # let the bar's CSS transition finish for the screenshot
        shoot(page, "running")
        finish.set()
        page.wait_for_function(
            f"() => document.querySelector(`tr[data-run='{run.pk}']`).dataset.status"
            " === 'succeeded'",
            timeout=20_000,
        )
        assert page.evaluate(bar_width(run.pk)) == "100%"
        shoot(page, "succeeded")
    finally:
        go.set()
        finish.set()
        worker.join(30)
    run.refresh_from_db()
    assert run.status == "succeeded" and run.rows_done == STEPS
