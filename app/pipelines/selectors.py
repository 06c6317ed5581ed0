"""Read-side views of pipeline runs (for the API's run-status endpoint and lists)."""

from __future__ import annotations

from typing import Any

from ..models import PipelineRun
from ..selectors.runs import visible_runs


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def run_status(run: PipelineRun) -> dict[str, Any]:
    """A run's status and progress as a JSON-ready dict."""
    return {
        "id": run.pk,
        "name": run.name,
        "status": run.status,
        "mode": run.mode,
        "dry_run": run.dry_run,
        "user_id": run.user_id,
        "steps_done": run.steps_done,
        "steps_total": run.steps_total,
        "rows_done": run.rows_done,
        "rows_total": run.rows_total,
        "result": run.result,
        "error": run.error,
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "heartbeat_at": _iso(run.heartbeat_at),
    }


def runs_for(user) -> Any:
    """Runs a user may see: the one rule of ``app.selectors.runs.visible_runs``."""
    return visible_runs(user)
