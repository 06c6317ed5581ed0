"""Back-office pages. Thin views: reads come from ``app.selectors.dashboard``, the prior
price from ``app.services.omnibus``, pipeline runs from ``app.utils.utils.process_pipeline``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from ..selectors import dashboard as selectors
from ..services.omnibus import current_reduction
from .charts import price_chart_svg


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
            "runs": _with_progress(selectors.recent_runs()),
            "price_changes": selectors.recent_price_changes(),
        },
    )


@login_required
@require_GET
def runs_json(request: HttpRequest) -> JsonResponse:
    """Progress of the runs named in ``?ids=1,2`` (default: unfinished runs), for polling."""
    raw = request.GET.get("ids", "")
    ids = [int(part) for part in raw.split(",") if part.strip().isdigit()]
    runs = selectors.runs_by_id(ids) if ids else selectors.active_runs()[:100]
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
        },
    )


@login_required
def pipeline(request: HttpRequest) -> HttpResponse:  # replaced once the engine lands
    return HttpResponse(status=501)


@login_required
def pipeline_run(request: HttpRequest, pk: int) -> HttpResponse:
    return HttpResponse(status=501)
