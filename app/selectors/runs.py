"""Which pipeline runs a user may read: the one rule behind the API and the pages.

A run holds its spec and its result (SKUs, prices, errors), so it is private to whoever
started it; staff (and superusers) oversee the back office and read every run.
"""

from __future__ import annotations

from django.db.models import QuerySet

from ..models import PipelineRun


def visible_runs(user) -> QuerySet[PipelineRun]:
    """Runs ``user`` may read, with their user: all for staff, else only their own."""
    runs = PipelineRun.objects.select_related("user")
    if user is None or not user.is_authenticated:
        return runs.none()
    if user.is_staff or user.is_superuser:
        return runs
    return runs.filter(user_id=user.pk)


class PayloadPruned(Exception):
    """The run's spec and result were removed by ``manage.py prune``: what was read from
    them (diff, rejected rows) is gone, not empty."""

    def __init__(self, run: PipelineRun) -> None:
        super().__init__(
            f"The spec and result of run {run.pk} were removed by the retention policy on "
            f"{run.payload_pruned_at:%Y-%m-%d} (STOCKPIPE_RETAIN_RUN_PAYLOAD_DAYS); its "
            "status, counts and times remain."
        )


def run_result(run: PipelineRun) -> dict:
    """The run's result (empty while it has none); ``PayloadPruned`` once pruned."""
    if run.payload_pruned_at is not None:
        raise PayloadPruned(run)
    return run.result if isinstance(run.result, dict) else {}
