"""The models, their querysets and their write paths.

``writes`` is imported first: it needs ``Product`` defined, while ``models`` and
``querysets`` call it only when a write runs, so this order lets each module import the
others at the top.
"""

from . import writes  # noqa: F401 (must come first, see above)
from .models import (
    MAX_STOCK,
    TRACKED_FIELDS,
    ApiToken,
    DeletionAudit,
    DeliveryStatus,
    Location,
    PipelineRun,
    PipelineRunSpec,
    PriceHistory,
    Product,
    Reservation,
    StockAlert,
    StockLevel,
    StockMovement,
)
from .profiles import ImportProfile
from .webhooks import WebhookAttempt, WebhookDelivery, WebhookEvent, WebhookSubscription

__all__ = [
    "MAX_STOCK",
    "TRACKED_FIELDS",
    "ApiToken",
    "DeletionAudit",
    "DeliveryStatus",
    "ImportProfile",
    "Location",
    "PipelineRun",
    "PipelineRunSpec",
    "PriceHistory",
    "Product",
    "Reservation",
    "StockAlert",
    "StockLevel",
    "StockMovement",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEvent",
    "WebhookSubscription",
]
