"""Low-stock alerts with their e-mail delivery state."""

from __future__ import annotations

from typing import Literal

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router

from ..models import DeliveryStatus, StockAlert
from ..selectors.replica import replica_reads
from .auth import AUTH
from .errors import responses
from .schemas import AlertOut, AlertPage, ObjectId, PageNumber, PageSize, Sku, paginate

router = Router(tags=["alerts"], auth=AUTH)

Delivery = Literal[tuple(DeliveryStatus.values)]  # type: ignore[valid-type]


@router.get("", response={200: AlertPage, **responses(401, 422)})
def list_alerts(
    request: HttpRequest,
    state: Literal["open", "resolved", "all"] = "all",
    delivery_status: Delivery = None,
    sku: Sku = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """Alerts, newest first; ``state`` open (not restocked yet) or resolved."""
    replica_reads(request)
    alerts = StockAlert.objects.order_by("-opened_at", "-id")
    if state == "open":
        alerts = alerts.filter(resolved_at__isnull=True)
    elif state == "resolved":
        alerts = alerts.filter(resolved_at__isnull=False)
    if delivery_status:
        alerts = alerts.filter(delivery_status=delivery_status)
    if sku:
        alerts = alerts.filter(sku=sku)
    return paginate(alerts, page, page_size)


@router.get("/{alert_id}", response={200: AlertOut, **responses(401, 404, 422)})
def get_alert(request: HttpRequest, alert_id: ObjectId):
    return get_object_or_404(StockAlert, pk=alert_id)
