from .models import (
    TRACKED_FIELDS,
    ApiToken,
    DeletionAudit,
    DeliveryStatus,
    PipelineRun,
    PriceHistory,
    Product,
    StockAlert,
    StockMovement,
)
from .webhooks import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription

__all__ = [
    "TRACKED_FIELDS",
    "ApiToken",
    "DeletionAudit",
    "DeliveryStatus",
    "PipelineRun",
    "PriceHistory",
    "Product",
    "StockAlert",
    "StockMovement",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
]
