from .models import (
    MAX_STOCK,
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
    "MAX_STOCK",
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
