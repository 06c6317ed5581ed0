"""The heartbeat of a running pipeline (PostgreSQL) goes on after its progress connection
fails once: ``fail_stale_runs`` must not take a live run for dead (and roll its work back)
because one progress write failed, however long the run goes on after it."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from django.db import connection

from app.models import Product
from app.pipelines.service import fail_stale_runs, process_pipeline
from tests.factories import ProductFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TICK = 1.1  # a little over progress.INTERVAL: each report is written


def drop_progress_connection() -> int:
    """Terminate the server session that writes the run's progress (a dropped connection)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> "
            "pg_backend_pid() AND datname = current_database() AND query LIKE %s",
            ["%SET steps_done = %"],
        )
        return len(cursor.fetchall())


def test_the_heartbeat_goes_on_after_a_progress_write_fails():
    ProductFactory(sku="HB-1", stock=10)
    ProductFactory(sku="HB-2", stock=10)
    calls, dropped, declared_dead = [], [], []

    def sweep() -> None:  # manage.py fail_stale_runs, from another process
        declared_dead.append(fail_stale_runs(timedelta(seconds=2 * TICK - 0.2)))
        connection.close()

    def on_progress(run) -> None:
        calls.append(run.steps_done)
        if len(calls) == 2:
            dropped.append(drop_progress_connection())
        if len(calls) <= 4:
            time.sleep(TICK)  # a slow step; the report after it is written
        if len(calls) == 4:
            sweeper = threading.Thread(target=sweep)
            sweeper.start()
            sweeper.join(30)

    result = process_pipeline(
        {
            "name": "slow",
            "steps": [
                {"op": "adjust_stock", "deltas": {"HB-1": -1}},
                {"op": "adjust_stock", "deltas": {"HB-2": -1}},
            ],
        },
        on_progress=on_progress,
    )
    assert len(calls) >= 4 and dropped == [1], (calls, dropped)
    assert declared_dead == [0]
    assert result["status"] == "succeeded", result
    assert dict(Product.objects.values_list("sku", "stock")) == {"HB-1": 9, "HB-2": 9}
