"""An async pipeline whose worker is SIGKILLed mid-run: all or nothing, never stuck."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from django.db import connections

from app.models import PipelineRun, PriceHistory, Product
from tests.factories import ProductFactory
from tests.reliability.conftest import both_task_backends, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@both_task_backends
def test_killed_async_pipeline_leaves_nothing_half_applied_and_is_marked_failed(processes):
    for i in range(50):
        ProductFactory(sku=f"K-{i:02d}", price=Decimal("10.00"), stock=20)
    ProductFactory(sku="LOCKED", stock=20)
    spec = {
        "name": "killed mid-run",
        "mode": "async",
        "steps": [
            {"op": "set_prices", "prices": {f"K-{i:02d}": "12.34" for i in range(50)}},
            {"op": "adjust_stock", "deltas": {"LOCKED": -1}},
        ],
    }
    # Step 2 needs the LOCKED row, which another connection holds: the run is provably in
    # the middle (step 1 written, uncommitted) when its worker dies.
    locker = connections.create_connection("default")
    locker.set_autocommit(False)
    with locker.cursor() as cursor:
        cursor.execute("SELECT id FROM app_product WHERE sku = 'LOCKED' FOR UPDATE")
    try:
        # Queued by another process, on the test's task backend.
        queued = processes.actors([["queue_pipeline", json.dumps(spec)]])[0]
        run_id = int(queued.strip().rsplit("run_id=", 1)[1])
        assert PipelineRun.objects.get(pk=run_id).status == PipelineRun.Status.PENDING
        worker = processes.worker()
        wait_until(
            lambda: PipelineRun.objects.get(pk=run_id).status == PipelineRun.Status.RUNNING,
            message="the run to start",
        )
        with connections["default"].cursor() as cursor:

            def blocked() -> bool:
                cursor.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND wait_event_type = 'Lock'"
                )
                return cursor.fetchone()[0] > 0

            wait_until(blocked, message="the run to reach step 2")
        processes.kill(worker)  # with RQ, the job's forked work horse too
    finally:
        locker.rollback()
        locker.close()

    assert not Product.objects.filter(price=Decimal("12.34")).exists()
    assert not PriceHistory.objects.exists()
    assert PipelineRun.objects.get(pk=run_id).status == PipelineRun.Status.RUNNING
    processes.manage("fail_stale_runs", "--minutes", "0")
    run = PipelineRun.objects.get(pk=run_id)
    assert run.status == PipelineRun.Status.FAILED and run.finished_at is not None
    assert run.error["kind"] == "abandoned"
    assert Product.objects.get(sku="LOCKED").stock == 20
