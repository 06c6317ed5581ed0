"""Two pipelines that lock the same products in opposite orders (PostgreSQL): each holds its
first step's row lock and waits for the other's, the server aborts one of them with a
deadlock, and that run is retried from the start once the other has committed. Before,
the aborted run failed as an internal error although nothing was wrong with it."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from app.models import PipelineRun, Product, StockMovement
from app.pipelines.service import process_pipeline
from tests.factories import ProductFactory

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def test_two_pipelines_in_opposite_orders_both_apply():
    ProductFactory(sku="DL-A", stock=100)
    ProductFactory(sku="DL-B", stock=100)
    both_hold_their_first_lock = threading.Barrier(2, timeout=30)
    results: dict[str, dict] = {}
    errors: list[BaseException] = []

    def run(name: str, first: str, second: str) -> None:
        waited = []

        def after_first_step(run: PipelineRun) -> None:
            if run.steps_done == 1 and not waited:  # only in the first attempt
                waited.append(True)
                both_hold_their_first_lock.wait()

        try:
            results[name] = process_pipeline(
                {
                    "name": name,
                    "steps": [
                        {"op": "adjust_stock", "deltas": {first: -1}},
                        {"op": "adjust_stock", "deltas": {second: -2}},
                    ],
                },
                on_progress=after_first_step,
            )
        except BaseException as error:
            errors.append(error)
        finally:
            connection.close()

    threads = [
        threading.Thread(target=run, args=("ab", "DL-A", "DL-B")),
        threading.Thread(target=run, args=("ba", "DL-B", "DL-A")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == []
    assert {name: r["status"] for name, r in results.items()} == {
        "ab": "succeeded",
        "ba": "succeeded",
    }
    assert dict(Product.objects.values_list("sku", "stock")) == {"DL-A": 97, "DL-B": 97}
    # Each run's effects once: 2 ledger rows per run, none left from the aborted attempt.
    moves = StockMovement.objects.filter(sku__startswith="DL-", delta__lt=0)
    assert sorted(moves.values_list("sku", "delta")) == [
        ("DL-A", -2),
        ("DL-A", -1),
        ("DL-B", -2),
        ("DL-B", -1),
    ]
    assert PipelineRun.objects.filter(status="succeeded").count() == 2
