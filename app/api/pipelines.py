"""Pipeline runs: list and status. Execution is ``POST /api/pipelines/execute``, a plain
Django view (``app.views.ExecutePipelineView``) described in the OpenAPI document by
``app.api.openapi``."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router

from ..models import PipelineRun
from ..selectors.replica import replica_reads
from ..selectors.runs import visible_runs
from .auth import AUTH
from .errors import responses
from .schemas import ObjectId, PageNumber, PageSize, RunOut, RunPage, paginate

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
