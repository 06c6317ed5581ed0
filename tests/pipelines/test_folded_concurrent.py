"""Folded map steps against a concurrent writer (PostgreSQL): the group stages each
product's name and threshold with its row lock (``folded._fill``), and its effects read
them from the stage. A rename and threshold change committed by another transaction while
the group waits for that lock must reach the group's history rows and alert episodes, as
they did when the effects joined the products back after the ``UPDATE``."""

from __future__ import annotations

import threading
import time
from decimal import Decimal

import pytest
from django.db import connection, transaction

from app.models import PriceHistory, Product, StockAlert
from tests.pipelines.test_folded import CASES, SEEDED
from tests.pipelines.test_identity import seed

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _waiting_for_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # read afresh in a transaction
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
            "AND datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0] > 0


def test_a_rename_committed_while_the_group_waits_for_its_lock_reaches_the_effects(
    operator,
):
    from app.pipelines.service import process_pipeline

    seed(SEEDED)
    results: dict = {}
    errors: list[BaseException] = []

    def run() -> None:
        try:
            results["run"] = process_pipeline(CASES["price then stock"], user=operator)
        except BaseException as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    with transaction.atomic():
        Product.objects.filter(sku="A-1").update(name="Renamed A-1", low_stock_threshold=0)
        thread.start()
        deadline = time.monotonic() + 30
        while not _waiting_for_a_lock():
            assert thread.is_alive(), (results, errors)
            assert time.monotonic() < deadline, "the pipeline never waited for the row lock"
            time.sleep(0.05)
    thread.join(timeout=60)
    assert errors == []
    assert results["run"]["status"] == "succeeded", results["run"]
    assert list(PriceHistory.objects.filter(sku="A-1").values_list("name", "new_price")) == [
        ("Renamed A-1", Decimal("11.00"))
    ]
    # stock 5 - 2 = 3: under the committed threshold 0 no alert (the old one, 4, opens one)
    assert not StockAlert.objects.filter(sku="A-1").exists()
    assert not StockAlert.objects.filter(resolved_at__isnull=True).exists()
