"""Back-office pages. Thin views: reads come from ``app.selectors.dashboard``, the prior
price from ``app.services.omnibus``, pipeline runs from ``app.utils.utils.process_pipeline``."""

from __future__ import annotations

import json
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required, permission_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from ..models import ImportProfile, PipelineRun
from ..pipelines.reports import CSV_CONTENT_TYPE, diff_rows, rejected_csv, rejected_rows
from ..selectors import catalogue, exports
from ..selectors import dashboard as selectors
from ..selectors.replica import replica_reads
from ..selectors.runs import PayloadPruned, run_result, visible_runs
from ..services.import_profiles import ProfileInvalid, save_profile
from ..services.omnibus import current_reduction
from ..services.stock import availability
from ..utils.utils import process_pipeline
from . import rows
from .charts import price_chart_svg, stock_chart_svg, stock_chart_table
from .forms import ExportForm, ImportProfileForm, PipelineForm

DIFF_PAGE = 50  # diff rows (one per changed field) per page
REJECTED_PAGE = 50


def _with_progress(runs):
    runs = list(runs)
    for run in runs:
        run.progress = selectors.run_progress(run)
    return runs


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    replica_reads(request)
    now, fmt = timezone.now(), rows.Formats()
    alerts = list(selectors.open_alerts())
    holds = list(selectors.expiring_reservations())
    changes = list(selectors.recent_price_changes())
    return render(
        request,
        "web/dashboard.html",
        {
            "alerts": alerts,
            "alert_rows": rows.open_alert_rows(alerts, fmt, now),
            "runs": _with_progress(selectors.recent_runs(request.user)),
            "price_changes": changes,
            "price_change_rows": rows.recent_price_change_rows(changes, fmt, now),
            "reservations": holds,
            "reservation_rows": rows.expiring_reservation_rows(holds, fmt, now),
        },
    )


@login_required
@require_GET
def runs_json(request: HttpRequest) -> JsonResponse:
    """Progress of the runs named in ``?ids=1,2`` (default: unfinished runs), for polling."""
    replica_reads(request)
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
    """Filtered, sorted, keyset-paginated products; totals are fetched by the page from
    ``product_totals`` (they read the whole filtered set)."""
    replica_reads(request)
    context = {"sorts": catalogue.SORTS, "exports": _export_links(request.user)}
    try:
        query = catalogue.parse_query(request.GET)
    except catalogue.InvalidListParameter as exc:
        context.update(query=catalogue.ProductQuery(), error=exc.message, page=None)
        return render(request, "web/product_list.html", context, status=400)
    params = query.filter_params()
    context.update(
        query=query,
        page=catalogue.product_page(query),
        params=urlencode(params),
        export_params=urlencode({"sku_prefix": query.sku_prefix} if query.sku_prefix else {}),
        sort_links=_sort_links(query, params),
    )
    return render(request, "web/product_list.html", context)


def _sort_links(query: catalogue.ProductQuery, params: dict[str, str]) -> dict[str, dict]:
    """Per column: the link that sorts by it (ascending, or descending if it is the
    current ascending sort) and the current direction, if any."""
    links = {}
    for name in catalogue.SORTS:
        current = query.sort.lstrip("-") == name
        descending = query.sort.startswith("-")
        target = f"-{name}" if current and not descending else name
        links[name] = {
            "href": "?" + urlencode({**params, "sort": target}),
            "direction": ("descending" if descending else "ascending") if current else "",
        }
    return links


@login_required
@require_GET
def product_totals(request: HttpRequest) -> JsonResponse:
    """Count, stock units and stock value of the product list's filtered set."""
    replica_reads(request)
    try:
        query = catalogue.parse_query(request.GET)
    except catalogue.InvalidListParameter as exc:
        return JsonResponse({"detail": exc.message, "param": exc.param}, status=400)
    totals = catalogue.product_totals(query)
    return JsonResponse({**totals, "value": str(totals["value"])})


def _export_links(user) -> list[exports.Dataset]:
    return [d for d in exports.DATASETS.values() if user.has_perm(d.permission)]


@login_required
@require_GET
def export_page(request: HttpRequest) -> HttpResponse:
    """A form choosing dataset, format, SKU prefix and date range; submitting it downloads."""
    return render(
        request,
        "web/exports.html",
        {"form": ExportForm(user=request.user), "datasets": _export_links(request.user)},
    )


@login_required
@require_GET
def export_download(request: HttpRequest) -> HttpResponse:
    """The chosen export, streamed; a bad parameter shows the form again with the error."""
    form = ExportForm(request.GET, user=request.user)
    if not form.is_valid():
        if form.forbidden:
            raise PermissionDenied(form.forbidden)
        context = {"form": form, "datasets": _export_links(request.user)}
        return render(request, "web/exports.html", context, status=400)
    data = form.cleaned_data
    return exports.export_file(data["dataset"], data["format"], data["filters"]).response()


@login_required
@require_GET
def product_detail(request: HttpRequest, sku: str) -> HttpResponse:
    replica_reads(request)
    product = selectors.product_by_sku(sku)
    now, fmt = timezone.now(), rows.Formats()
    available, locations = availability(product)
    # One read each of the latest price changes and ledger rows (index-only scans, migration
    # 0014): the charts draw them all, the lists show the first PRODUCT_ROWS, the Omnibus
    # walk starts on the price changes.
    history = selectors.price_history_rows(product)
    ledger = selectors.ledger_rows(product)
    current = {place.code: place.quantity for place in locations}
    series = selectors.stock_series(product, now, rows=ledger, current=current)
    table = stock_chart_table(series)
    changes, moves = history[: selectors.PRODUCT_ROWS], ledger[: selectors.PRODUCT_ROWS]
    alerts = list(selectors.alert_history(product))
    holds = selectors.active_reservations(product)
    return render(
        request,
        "web/product_detail.html",
        {
            "product": product,
            # From the rows the chart read (all of them when they are fewer than it draws).
            "reduction": current_reduction(
                product, now, newest=history, whole=len(history) < selectors.CHART_POINTS
            ),
            "chart": price_chart_svg(selectors.price_series(product, now, rows=history)),
            "price_changes": changes,
            "price_change_rows": rows.price_change_rows(changes, fmt),
            "movements": moves,
            "movement_rows": rows.movement_rows(moves, fmt),
            "alerts": alerts,
            "alert_rows": rows.alert_history_rows(alerts, fmt),
            "available": available,
            "stock_chart": stock_chart_svg(series),
            "stock_table": table,
            "stock_table_rows": rows.stock_table_rows(table, fmt) if table else "",
            "locations": locations,
            "reservations": holds,
            "reservation_rows": rows.active_reservation_rows(holds, fmt),
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
    replica_reads(request)
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
    run = visible_runs(request.user).select_related("spec_record").filter(pk=int(raw)).first()
    if run is None or not isinstance(run.spec, dict):
        return ""
    spec = {k: v for k, v in run.spec.items() if k not in ("dry_run", "mode")}
    return json.dumps(spec, indent=2, ensure_ascii=False)


@login_required
@permission_required(PIPELINE_PERMISSION, raise_exception=True)
@require_GET
def pipeline_run(request: HttpRequest, pk: int) -> HttpResponse:
    replica_reads(request)
    run = get_object_or_404(visible_runs(request.user).select_related("spec_record"), pk=pk)
    run.progress = selectors.run_progress(run)
    result = run.result or {}
    diff = Paginator(diff_rows(result), DIFF_PAGE).get_page(request.GET.get("page"))
    rejected = Paginator(rejected_rows(result), REJECTED_PAGE).get_page(request.GET.get("rpage"))
    return render(
        request,
        "web/pipeline_run.html",
        {
            "run": run,
            "result": result,
            "error": run.error or result.get("error"),
            "diff_page": diff,
            "diff_rows": _spans(list(diff.object_list)),
            "diff_count": len(result.get("diff") or []),
            "rejected_page": rejected,
            "spec_json": _spec_text(run.spec),
        },
    )


def _spans(rows: list[dict]) -> list[dict]:
    """A page of diff rows with the SKU and action shown once per product (rowspan)."""
    out = []
    for i, row in enumerate(rows):
        first = i == 0 or rows[i - 1]["sku"] != row["sku"]
        span = 0
        if first:
            while i + span < len(rows) and rows[i + span]["sku"] == row["sku"]:
                span += 1
        out.append({**row, "first": first, "span": span})
    return out


def _spec_text(spec) -> str:
    """The spec as shown on the page: an inline XLSX (base64) is abbreviated."""
    if isinstance(spec, dict) and isinstance(spec.get("steps"), list):
        steps = [
            {**s, "xlsx": f"<{len(s['xlsx']):,} characters of base64>"}
            if isinstance(s, dict) and isinstance(s.get("xlsx"), str)
            else s
            for s in spec["steps"]
        ]
        spec = {**spec, "steps": steps}
    return json.dumps(spec, indent=2, ensure_ascii=False)[:20000]


@login_required
@permission_required(PIPELINE_PERMISSION, raise_exception=True)
@require_GET
def pipeline_rejected_csv(request: HttpRequest, pk: int) -> StreamingHttpResponse:
    """The rows a run rejected, as a formula-safe CSV (the API serves the same file)."""
    run = get_object_or_404(visible_runs(request.user), pk=pk)
    try:
        result = run_result(run)
    except PayloadPruned as exc:
        return HttpResponse(str(exc), status=410, content_type="text/plain; charset=utf-8")
    response = StreamingHttpResponse(rejected_csv(result), content_type=CSV_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="run-{run.pk}-rejected.csv"'
    return response


@login_required
@permission_required(PIPELINE_PERMISSION, raise_exception=True)
@require_POST
def pipeline_commit(request: HttpRequest, pk: int) -> HttpResponse:
    """Apply exactly what a preview showed: the same spec, checked against the preview's
    fingerprint. If the catalogue (or a profile) changed since, nothing is applied and a
    fresh preview is shown instead."""
    run = get_object_or_404(visible_runs(request.user).select_related("spec_record"), pk=pk)
    if run.status != PipelineRun.Status.PREVIEWED:
        messages.error(request, f"Run #{run.pk} is not a preview; only a preview can be run.")
        return redirect("pipeline-run", pk=run.pk)
    spec = _for_action(run.spec, preview=False)
    fingerprint = (run.result or {}).get("fingerprint")
    if fingerprint:
        spec["fingerprint"] = fingerprint
    result = process_pipeline(spec, user=request.user)
    if (result.get("error") or {}).get("kind") == "stale":
        fresh = process_pipeline(_for_action(run.spec, preview=True), user=request.user)
        messages.warning(
            request,
            f"The catalogue changed since preview #{run.pk}; nothing was applied. "
            "This is a new preview of the same feed.",
        )
        return redirect("pipeline-run", pk=fresh["run_id"])
    return redirect("pipeline-run", pk=result["run_id"])


PROFILE_PERMISSION = "app.view_importprofile"


@login_required
@permission_required(PROFILE_PERMISSION, raise_exception=True)
@require_http_methods(["GET", "POST"])
def profiles(request: HttpRequest, pk: int | None = None) -> HttpResponse:
    """Import profiles: the list, and a form to add one or edit the one at ``pk``."""
    profile = get_object_or_404(ImportProfile, pk=pk) if pk else None
    if request.method == "POST":
        needed = "app.change_importprofile" if profile else "app.add_importprofile"
        if not request.user.has_perm(needed):
            messages.error(request, "You may not save import profiles.")
            return redirect("profiles")
        form = ImportProfileForm(request.POST, instance=profile)
        if form.is_valid():
            try:
                saved = save_profile(profile, **form.cleaned_data)
            except ProfileInvalid as exc:
                for item in exc.errors:
                    form.add_error(item["loc"][0] if item["loc"] else None, item["msg"])
            else:
                messages.success(request, f"Profile {saved.name!r} saved.")
                return redirect("profiles")
    else:
        form = ImportProfileForm(instance=profile)
    return render(
        request,
        "web/profiles.html",
        {"form": form, "profile": profile, "profiles": ImportProfile.objects.order_by("name")},
        status=400 if form.errors else 200,
    )
