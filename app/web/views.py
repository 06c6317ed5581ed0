"""Back-office pages. Thin views: reads come from ``app.selectors.dashboard``, the prior
price from ``app.services.omnibus``, pipeline runs from ``app.utils.utils.process_pipeline``."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..models import PipelineRun
from ..selectors import dashboard as selectors
from ..selectors.runs import visible_runs
from ..services.omnibus import current_reduction
from ..services.stock import availability
from ..utils.utils import process_pipeline
from .charts import price_chart_svg, stock_chart_svg
from .forms import PipelineForm

DIFF_ROWS = 500


def _with_progress(runs):
    runs = list(runs)
    for run in runs:
        run.progress = selectors.run_progress(run)
    return runs


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "web/dashboard.html",
        {
            "alerts": selectors.open_alerts(),
            "runs": _with_progress(selectors.recent_runs(request.user)),
            "price_changes": selectors.recent_price_changes(),
            "reservations": selectors.expiring_reservations(),
        },
    )


@login_required
@require_GET
def runs_json(request: HttpRequest) -> JsonResponse:
    """Progress of the runs named in ``?ids=1,2`` (default: unfinished runs), for polling."""
    raw = request.GET.get("ids", "")
    ids = [int(part) for part in raw.split(",") if part.strip().isdigit()]
    runs = (
        selectors.runs_by_id(request.user, ids)
        if ids
        else selectors.active_runs(request.user)[:100]
    )
    return JsonResponse(
        {
            "runs": [
                {
                    "id": run.pk,
                    "status": run.status,
                    "progress": selectors.run_progress(run),
                    "steps_done": run.steps_done,
                    "steps_total": run.steps_total,
                    "rows_done": run.rows_done,
                    "rows_total": run.rows_total,
                    "finished": run.finished_at is not None
                    or run.status not in ("pending", "running"),
                }
                for run in runs
            ]
        }
    )


@login_required
@require_GET
def product_list(request: HttpRequest) -> HttpResponse:
    query = request.GET.get("q", "").strip()
    return render(
        request,
        "web/product_list.html",
        {"products": selectors.product_list(query), "query": query},
    )


@login_required
@require_GET
def product_detail(request: HttpRequest, sku: str) -> HttpResponse:
    product = selectors.product_by_sku(sku)
    now = timezone.now()
    available, locations = availability(product)
    return render(
        request,
        "web/product_detail.html",
        {
            "product": product,
            "reduction": current_reduction(product, now),
            "chart": price_chart_svg(selectors.price_series(product, now)),
            "price_changes": selectors.price_changes(product),
            "movements": selectors.stock_movements(product),
            "alerts": selectors.alert_history(product),
            "available": available,
            "stock_chart": stock_chart_svg(selectors.stock_series(product, now)),
            "locations": locations,
            "reservations": selectors.active_reservations(product),
        },
    )


PIPELINE_PERMISSION = "app.run_pipeline"


@login_required
@permission_required(PIPELINE_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def pipeline(request: HttpRequest) -> HttpResponse:
    """Paste or upload a spec/CSV; Preview runs it as a dry run, Run runs it for real.

    Either way the run is recorded and the browser is redirected to its page (POST/redirect/
    GET); the page of a preview offers to run the same spec for real.
    """
    if request.method == "POST":
        form = PipelineForm(request.POST, request.FILES)
        if form.is_valid():
            preview = request.POST.get("action") != "run"
            result = process_pipeline(
                _for_action(form.cleaned_data["spec"], preview=preview), user=request.user
            )
            return redirect("pipeline-run", pk=result["run_id"])
    else:
        form = PipelineForm(initial={"source": _source_of(request)})
    return render(
        request,
        "web/pipeline.html",
        {
            "form": form,
            "runs": _with_progress(visible_runs(request.user)[: selectors.RECENT]),
        },
        status=400 if form.errors else 200,
    )


def _for_action(spec: dict, *, preview: bool) -> dict:
    """The spec as the pressed button means it: a preview is a synchronous dry run."""
    if preview:
        return {**spec, "dry_run": True, "mode": "sync"}
    return {**spec, "dry_run": False}


def _source_of(request: HttpRequest) -> str:
    """``?from=<run id>``: prefill the form with an earlier run's spec, to edit and retry."""
    raw = request.GET.get("from", "")
    if not raw.isdigit():
        return ""
    run = visible_runs(request.user).filter(pk=int(raw)).first()
    if run is None or not isinstance(run.spec, dict):
        return ""
    spec = {k: v for k, v in run.spec.items() if k not in ("dry_run", "mode")}
    return json.dumps(spec, indent=2, ensure_ascii=False)


@login_required
@permission_required(PIPELINE_PERMISSION, raise_exception=True)
@require_GET
def pipeline_run(request: HttpRequest, pk: int) -> HttpResponse:
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    run.progress = selectors.run_progress(run)
    result = run.result or {}
    return render(
        request,
        "web/pipeline_run.html",
        {
            "run": run,
            "result": result,
            "error": run.error or result.get("error"),
            "diff_rows": _diff_rows(result.get("diff") or []),
            "diff_count": len(result.get("diff") or []),
            "spec_json": json.dumps(run.spec, indent=2, ensure_ascii=False)[:20000],
        },
    )


def _diff_rows(diff: list[dict]) -> list[dict]:
    """One table row per changed field, the SKU and action shown on the first row only."""
    rows = []
    for entry in diff[:DIFF_ROWS]:
        changes = entry.get("changes") or [{"field": "", "before": None, "after": None}]
        for i, change in enumerate(changes):
            rows.append(
                {
                    "sku": entry["sku"],
                    "action": entry["action"],
                    "first": i == 0,
                    "span": len(changes),
                    **change,
                }
            )
    return rows


@login_required
@permission_required(PIPELINE_PERMISSION, raise_exception=True)
@require_POST
def pipeline_commit(request: HttpRequest, pk: int) -> HttpResponse:
    """Run a previewed spec for real, against the data as it is now."""
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    if run.status != PipelineRun.Status.PREVIEWED:
        messages.error(request, f"Run #{run.pk} is not a preview; only a preview can be run.")
        return redirect("pipeline-run", pk=run.pk)
    result = process_pipeline(_for_action(run.spec, preview=False), user=request.user)
    return redirect("pipeline-run", pk=result["run_id"])
