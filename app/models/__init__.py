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
]
