"""Pipeline runs: list and status. Execution is ``POST /api/pipelines/execute``, a plain
Django view (``app.views.ExecutePipelineView``) described in the OpenAPI document by
``app.api.openapi``."""

from __future__ import annotations

from typing import Any, Literal

from django.http import HttpRequest, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from ninja import Router, Schema
from ninja.errors import HttpError

from ..models import PipelineRun
from ..pipelines.reports import CSV_CONTENT_TYPE, diff_rows, rejected_csv, rejected_rows
from ..selectors.replica import replica_reads
from ..selectors.runs import PayloadPruned, run_result, visible_runs
from .auth import AUTH
from .errors import responses
from .schemas import ObjectId, Page, PageNumber, PageSize, RunOut, RunPage, paginate

router = Router(tags=["pipelines"], auth=AUTH)

RunStatus = Literal[tuple(PipelineRun.Status.values)]  # type: ignore[valid-type]


@router.get("/runs", response={200: RunPage, **responses(401, 422)})
def list_runs(
    request: HttpRequest,
    status: RunStatus = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """Pipeline runs you may read, newest first: your own; staff read every run."""
    replica_reads(request)
    runs = visible_runs(request.auth).order_by("-created_at", "-id")
    if status:
        runs = runs.filter(status=status)
    return paginate(runs, page, page_size)


@router.get("/runs/{run_id}", response={200: RunOut, **responses(401, 404, 422)})
def get_run(request: HttpRequest, run_id: ObjectId):
    """Status and progress of one of your runs (poll this for asynchronous runs); 404 for a
    run you may not read."""
    return get_object_or_404(visible_runs(request.auth), pk=run_id)


class DiffRowOut(Schema):
    sku: str
    action: str
    field: str
    before: Any | None
    after: Any | None


class DiffPage(Page):
    items: list[DiffRowOut]


class RejectedRowOut(Schema):
    step: int
    row: int
    column: str
    value: str
    message: str
    values: dict[str, str]


class RejectedPage(Page):
    items: list[RejectedRowOut]


@router.get("/runs/{run_id}/diff", response={200: DiffPage, **responses(401, 404, 410, 422)})
def get_diff(
    request: HttpRequest, run_id: ObjectId, page: PageNumber = 1, page_size: PageSize = 50
):
    """A preview's (dry run's) diff, one row per changed field: sku, field, before, after.
    Apply exactly that with the same spec plus ``"fingerprint"`` from the run's result."""
    return paginate(diff_rows(_result(request, run_id)), page, page_size)


@router.get(
    "/runs/{run_id}/rejected", response={200: RejectedPage, **responses(401, 404, 410, 422)}
)
def get_rejected(
    request: HttpRequest, run_id: ObjectId, page: PageNumber = 1, page_size: PageSize = 50
):
    """Rows a ``skip_invalid_rows`` run left out: the row in the supplier's file, its column,
    the value and why, with the row's values."""
    return paginate(rejected_rows(_result(request, run_id)), page, page_size)


@router.get(
    "/runs/{run_id}/rejected.csv",
    response=responses(401, 404, 410, 422),  # 200 only below: both would be two "200" keys
    openapi_extra={"responses": {"200": {"description": "CSV", "content": {"text/csv": {}}}}},
)
def get_rejected_csv(request: HttpRequest, run_id: ObjectId):
    """The rejected rows as CSV (row, column, value, message, then the supplier's columns);
    cells that a spreadsheet would run as formulas are prefixed with an apostrophe."""
    rows = rejected_csv(_result(request, run_id))
    response = StreamingHttpResponse(rows, content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="run-{run_id}-rejected.csv"'
    return response


def _result(request: HttpRequest, run_id: int) -> dict:
    """A visible run's result; 410 once retention removed it (an empty list would lie)."""
    run = get_object_or_404(visible_runs(request.auth), pk=run_id)
    try:
        return run_result(run)
    except PayloadPruned as exc:
        raise HttpError(410, str(exc)) from None
