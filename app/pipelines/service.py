"""Run pipelines: record a ``PipelineRun``, validate, execute all-or-nothing, report.

The run row is written outside the run's transaction, so failed and previewed runs are
recorded too; a successful run's final status is written inside it, so "succeeded" and the
data commit together. Steps run inside ``change_context(source="pipeline:<id>")``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from django.db import OperationalError, router, transaction
from django.utils import timezone

from ..core import jobs
from ..core.conflicts import transient_conflict
from ..core.context import change_context
from ..core.inputs import storable
from ..models import PipelineRun, Product
from ..signals import pipeline_finished
from ..tracking.batch import flush_open
from . import folded
from .base import StepFailure
from .progress import Progress
from .spec import PipelineSpec, SpecError, validate_spec
from .writer import RunState, StepUnit

logger = logging.getLogger(__name__)

STALE_AFTER = timedelta(minutes=10)
CONFLICT_ATTEMPTS = 3  # tries of a run aborted by a deadlock with a concurrent writer


class _Rollback(Exception):
    """Raised to roll back a dry run after it has run."""


class _Abandoned(Exception):
    """The run was declared dead (``fail_stale_runs``) while it ran: its work is rolled back."""


def status_url(run_id: int) -> str:
    return f"/api/pipelines/runs/{run_id}"


def process_pipeline(
    spec: dict[str, Any] | str | bytes | PipelineSpec,
    *,
    user=None,
    allow_files: bool = False,
    base_dir: str | Path | None = None,
    force_sync: bool = False,
    on_progress: Callable[[PipelineRun], None] | None = None,
) -> dict[str, Any]:
    """Validate and run a pipeline spec; return its result (also stored on the run).

    ``"mode": "async"`` specs are queued instead (unless ``force_sync``): the result then
    has status ``pending`` and the URL to poll. Validation errors and business failures come
    back as status ``failed`` with ``error.kind`` ``invalid`` or ``failed``; nothing is
    half-applied. Unexpected errors are recorded on the run and re-raised.
    """
    data = _as_data(spec)
    using = router.db_for_write(Product)
    # Refused input is recorded too: NUL and lone surrogates (no database stores them) are
    # replaced in the recorded copy; validation below refuses the original.
    record = storable(data)
    run = PipelineRun.objects.using(using).create(
        name=str(record.get("name", ""))[:200] if isinstance(record, dict) else "",
        spec=record,
        user=user if getattr(user, "is_authenticated", False) else None,
        status=PipelineRun.Status.PENDING,
        dry_run=bool(record.get("dry_run")) if isinstance(record, dict) else False,
        mode="sync"
        if force_sync or not isinstance(record, dict)
        else str(record.get("mode", "sync"))[:10],
    )
    try:
        parsed = validate_spec(data, allow_files=allow_files, base_dir=base_dir)
    except SpecError as exc:
        return _finish_failed(
            run, "invalid", "Invalid pipeline spec.", exc.errors, time.monotonic()
        )
    if parsed.mode == "async" and not force_sync:
        task = jobs.task("run_pipeline_task")
        transaction.on_commit(lambda: task.enqueue(run.pk), using=using)
        return {"run_id": run.pk, "status": run.status, "status_url": status_url(run.pk)}
    return execute(run, parsed, user=user, on_progress=on_progress)


def execute_queued(run_id: int) -> str:
    """Run a queued (async) run; a no-op if another worker already took it."""
    using = router.db_for_write(Product)
    run = (
        PipelineRun.objects.using(using)
        .filter(pk=run_id)
        .select_related("user", "spec_record")
        .first()
    )
    if run is None or run.status != PipelineRun.Status.PENDING:
        return "skipped"
    try:
        parsed = validate_spec(run.spec)
    except SpecError as exc:
        return _finish_failed(
            run, "invalid", "Invalid pipeline spec.", exc.errors, time.monotonic()
        )["status"]
    return execute(run, parsed, user=run.user)["status"]


def execute(
    run: PipelineRun,
    spec: PipelineSpec,
    *,
    user=None,
    on_progress: Callable[[PipelineRun], None] | None = None,
) -> dict[str, Any]:
    using = run._state.db or router.db_for_write(Product)
    started = time.monotonic()
    now = timezone.now()
    run.steps_total = len(spec.steps)
    run.rows_total = sum(step.size(using) for step in spec.steps)
    run.steps_done = run.rows_done = 0
    run.started_at = run.heartbeat_at = now
    claimed = (
        PipelineRun.objects.using(using)
        .filter(pk=run.pk, status=PipelineRun.Status.PENDING)
        .update(
            status=PipelineRun.Status.RUNNING,
            started_at=now,
            heartbeat_at=now,
            steps_total=run.steps_total,
            rows_total=run.rows_total,
        )
    )
    if not claimed:
        raise RuntimeError(f"Pipeline run {run.pk} is not pending.")
    run.status = PipelineRun.Status.RUNNING
    progress = Progress(run, using=using, on_progress=on_progress)
    # A deadlock with a concurrent writer aborts the whole run's transaction (nothing of it
    # stays): run it again from the first step, unless a caller's transaction encloses it
    # (that one is aborted too and only its owner can start it again).
    retry = not transaction.get_connection(using).in_atomic_block
    attempt = 1
    try:
        while True:
            state = _fresh_state(run, spec, using, progress)
            try:
                return _attempt(run, spec, state, user=user, started=started)
            except OperationalError as exc:
                conflict = transient_conflict(exc)
                if not retry or attempt >= CONFLICT_ATTEMPTS or conflict is None or _settled(run):
                    raise
                logger.warning(
                    "Pipeline run %s: %s with a concurrent transaction, running it again "
                    "(attempt %s of %s)",
                    run.pk,
                    conflict,
                    attempt + 1,
                    CONFLICT_ATTEMPTS,
                )
                time.sleep(random.uniform(0.01, 0.05) * attempt)
                attempt += 1
    except Exception as exc:
        if _settled(run):
            # What raised ran after the run's final status was stored (and, for a
            # successful run, committed): a non-robust on_commit callback, say. The run
            # stands as recorded; as with plain Django, the error reaches the caller.
            logger.exception("Pipeline run %s: an error after its final status was stored", run.pk)
            raise
        logger.exception("Pipeline run %s crashed", run.pk)
        _finish_failed(run, "internal", f"internal error: {type(exc).__name__}", [], started)
        raise
    finally:
        progress.close()


def _settled(run: PipelineRun) -> bool:
    """Whether the run's final status is stored for good (no longer ``running``, outside
    any transaction): then an error is not the run's, and neither a retry nor a "failed"
    status may follow it. Inside a caller's transaction nothing of the run is final yet."""
    using = run._state.db
    if transaction.get_connection(using).in_atomic_block:
        return False
    status = PipelineRun.objects.using(using).filter(pk=run.pk).values_list("status", flat=True)
    return status.first() not in (None, PipelineRun.Status.RUNNING)


def _fresh_state(run: PipelineRun, spec: PipelineSpec, using: str, progress: Progress) -> RunState:
    run.steps_done = run.rows_done = 0
    state = RunState(using=using, dry_run=spec.dry_run, progress=progress, policy=spec.policy)
    if spec.dry_run or spec.fingerprint:
        state.hasher = hashlib.sha256(_spec_digest(spec).encode())
    return state


def _attempt(
    run: PipelineRun, spec: PipelineSpec, state: RunState, *, user, started: float
) -> dict[str, Any]:
    """One all-or-nothing try of the run's steps; its outcome as ``execute`` returns it."""
    using = state.using
    flush_open()  # a caller's batch: its changes' effects outside the run's savepoint
    try:
        with (
            transaction.atomic(using=using),
            change_context(user=user, source=f"pipeline:{run.pk}"),
        ):
            steps, index = spec.steps, 0
            while index < len(steps):
                unit = StepUnit(index, steps[index].op, state)
                folding = folded.group(steps, index, unit)
                if folding > 1:  # map steps over the same SKUs: one product write
                    units = [unit] + [
                        StepUnit(i, steps[i].op, state) for i in range(index + 1, index + folding)
                    ]
                    folded.write_folded(units, [steps[u.index].map_write() for u in units])
                else:
                    steps[index].run(unit)
                    units = [unit]
                for unit in units:
                    state.steps.append({"index": unit.index, "op": unit.op, **vars(unit.counts)})
                    state.progress.step_done()
                index += len(units)
            fingerprint = state.hasher.hexdigest() if state.hasher is not None else None
            if spec.fingerprint and fingerprint != spec.fingerprint:
                raise StepFailure(
                    [
                        {
                            "loc": ["fingerprint"],
                            "msg": "the catalogue, the spec or an import profile changed "
                            "since the preview: preview again",
                        }
                    ],
                    kind="stale",
                )
            state.fingerprint = fingerprint
            if spec.dry_run:
                raise _Rollback
            result = _result(run, state, PipelineRun.Status.SUCCEEDED, started)
            if not _store(run, PipelineRun.Status.SUCCEEDED, result=result, only_running=True):
                raise _Abandoned
    except _Rollback:
        result = _result(run, state, PipelineRun.Status.PREVIEWED, started)
        _store(run, PipelineRun.Status.PREVIEWED, result=result)
        return result
    except StepFailure as exc:
        return _finish_failed(run, exc.kind, str(exc.errors[0]["msg"]), exc.errors, started, state)
    except _Abandoned:
        run.refresh_from_db()
        return {"run_id": run.pk, "status": run.status, "error": run.error}
    return result


def _result(run: PipelineRun, state: RunState, status: str, started: float) -> dict[str, Any]:
    totals = {
        key: sum(step[key] for step in state.steps)
        for key in ("created", "updated", "unchanged", "deleted")
    }
    totals["rejected"] = state.rejected_count
    totals.update(
        price_changes=state.price_change_count,
        alerts_opened=state.alerts_opened_count,
        alerts_resolved=state.alerts_resolved_count,
    )
    result = {
        "run_id": run.pk,
        "name": run.name,
        "status": status,
        "dry_run": state.dry_run,
        "steps": state.steps,
        "totals": totals,
        "price_changes": state.price_changes,
        "alerts": {"opened": state.alerts_opened, "resolved": state.alerts_resolved},
        "duration_ms": int((time.monotonic() - started) * 1000),
        "error": None,
        "policy": state.policy,
        "rejected": state.rejected,
    }
    if state.dry_run:
        result["diff"] = state.diff_list()
        result["fingerprint"] = state.fingerprint
    return result


def _spec_digest(spec: PipelineSpec) -> str:
    """The spec as it acts (name, dry run, mode and fingerprint aside), for fingerprints."""
    data = spec.model_dump(mode="json", exclude={"name", "dry_run", "mode", "fingerprint"})
    return json.dumps(data, sort_keys=True)


def _store(run: PipelineRun, status: str, *, only_running: bool = False, **values: Any) -> bool:
    now = timezone.now()
    qs = PipelineRun.objects.using(run._state.db).filter(pk=run.pk)
    if only_running:
        qs = qs.filter(status=PipelineRun.Status.RUNNING)
    values = {
        "status": status,
        "finished_at": now,
        "heartbeat_at": now,
        "steps_done": run.steps_done,
        "rows_done": run.rows_done,
        **values,
    }
    for key, value in values.items():
        setattr(run, key, value)
    stored = qs.update(**values) > 0
    if stored:  # webhooks: inside the run's transaction for a successful run
        pipeline_finished.send(sender=PipelineRun, run=run, using=run._state.db)
    return stored


def _finish_failed(
    run: PipelineRun,
    kind: str,
    detail: str,
    errors: list[dict[str, Any]],
    started: float,
    state: RunState | None = None,
) -> dict[str, Any]:
    """Record the run as failed (outside the rolled-back work) and return its result."""
    error = storable({"kind": kind, "detail": detail, "errors": errors})
    result = {
        "run_id": run.pk,
        "name": run.name,
        "status": PipelineRun.Status.FAILED,
        "dry_run": run.dry_run,
        "duration_ms": int((time.monotonic() - started) * 1000),
        "error": error,
    }
    _store(run, PipelineRun.Status.FAILED, result=result, error=error)
    return result


def _as_data(spec: Any) -> Any:
    if isinstance(spec, PipelineSpec):
        return spec.model_dump(mode="json", exclude_none=True)
    if isinstance(spec, (str, bytes, bytearray)):
        try:
            return json.loads(spec)
        except (ValueError, UnicodeDecodeError):
            # Not JSON text: keep it as given, so the run is recorded and validation says
            # "the spec must be an object" at the top level.
            return spec.decode(errors="replace") if isinstance(spec, (bytes, bytearray)) else spec
    # Python objects as given: PipelineRun.spec encodes Decimals (a Python caller's) itself.
    return spec


def fail_stale_runs(older_than: timedelta = STALE_AFTER) -> int:
    """Mark runs whose worker stopped (no heartbeat for ``older_than``) as failed.

    On PostgreSQL a live run's heartbeat moves every second or so; elsewhere it only moves
    between runs, so ``older_than`` must exceed the longest expected run there.
    """
    cutoff = timezone.now() - older_than
    now = timezone.now()
    error = {
        "kind": "abandoned",
        "detail": f"no heartbeat since before {cutoff.isoformat()}: the worker stopped",
        "errors": [],
    }
    with transaction.atomic():
        stale = list(
            PipelineRun.objects.select_for_update().filter(
                status=PipelineRun.Status.RUNNING, heartbeat_at__lt=cutoff
            )
        )
        for run in stale:
            run.status, run.error, run.finished_at = PipelineRun.Status.FAILED, error, now
            run.save(update_fields=["status", "error", "finished_at"])
            pipeline_finished.send(sender=PipelineRun, run=run, using=run._state.db)
    return len(stale)
