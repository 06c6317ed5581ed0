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
