"""A run whose transaction committed stays recorded as succeeded when something run after
the commit raises (a non-robust ``on_commit`` callback, say one a ``pipeline_finished``
receiver registers): the data committed, so "failed" (and, for an error coded as a deadlock,
running the steps again on the committed data) would be wrong. As with plain Django, the
callback's exception still reaches the caller."""

from __future__ import annotations

import psycopg
import pytest
from django.db import OperationalError, connection, transaction

from app.models import PipelineRun, Product, StockMovement
from app.signals import pipeline_finished
from app.utils.utils import process_pipeline
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

SPEC = {"name": "after commit", "steps": [{"op": "adjust_stock", "deltas": {"AC-1": -1}}]}


class Notifier:
    """A user's ``pipeline_finished`` receiver acting once the run has committed."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.sent = 0

    def __call__(self, sender, run, using=None, **kwargs) -> None:
        if run.status == PipelineRun.Status.SUCCEEDED:
            transaction.on_commit(self.notify, using=using)

    def notify(self) -> None:
        self.sent += 1
        raise self.error


def run_with(error: Exception) -> Notifier:
    notifier = Notifier(error)
    pipeline_finished.connect(notifier, sender=PipelineRun, dispatch_uid="test.after_commit")
    try:
        with pytest.raises(type(error)):
            process_pipeline(SPEC)
    finally:
        pipeline_finished.disconnect(sender=PipelineRun, dispatch_uid="test.after_commit")
    return notifier


def test_a_callback_raising_after_the_commit_leaves_the_run_succeeded():
    ProductFactory(sku="AC-1", stock=5)
    run_with(RuntimeError("notification service down"))
    assert Product.objects.get(sku="AC-1").stock == 4
    run = PipelineRun.objects.get()
    assert (run.status, run.error) == ("succeeded", None)
    assert run.result["totals"]["updated"] == 1


def deadlock_error() -> OperationalError:
    """What Django raises for a deadlock reported by PostgreSQL (psycopg's error as cause)."""
    try:
        try:
            raise psycopg.errors.DeadlockDetected("deadlock detected")
        except psycopg.Error as cause:
            raise OperationalError(str(cause)) from cause
    except OperationalError as error:
        return error


@pytest.mark.postgres
def test_a_deadlock_after_the_commit_does_not_run_the_steps_again():
    ProductFactory(sku="AC-1", stock=1)
    notifier = run_with(deadlock_error())
    assert notifier.sent == 1
    assert Product.objects.get(sku="AC-1").stock == 0
    assert StockMovement.objects.filter(sku="AC-1", delta=-1).count() == 1
    run = PipelineRun.objects.get()
    assert (run.status, run.error) == ("succeeded", None), run.error
    connection.close()
