"""The HTTP API (Django Ninja), mounted at ``/api/``; OpenAPI at ``/api/openapi.json``,
interactive docs at ``/api/docs``."""

from . import (
    alerts,
    audit,
    auth,
    errors,
    exports,
    history,
    locations,
    pipelines,
    products,
    profiles,
    reservations,
    stock,
    tokens,
    webhooks,
)
from .base import StockpipeAPI

api = StockpipeAPI(
    title="stockpipe API",
    version="1.0.0",
    urls_namespace="api",
    description=(
        "Inventory API. Authenticate with `Authorization: Bearer <token>` (create tokens at "
        "`POST /api/tokens` after `POST /api/auth/login`) or a browser session (send "
        "`X-CSRFToken` on writes). Errors are always "
        '`{"detail": ..., "errors": [{"loc": [...], "msg": ...}]}`; invalid input is 422.'
    ),
)
errors.install(api)
api.add_decorator(auth.attribute_to_auth_user)
api.add_router("/auth", auth.router)
api.add_router("/products", stock.router)
api.add_router("/products", history.router)
api.add_router("/products", products.router)  # last: /products/{anysku:sku} matches "/"
api.add_router("/locations", locations.router)
api.add_router("/reservations", reservations.router)
api.add_router("/alerts", alerts.router)
api.add_router("/pipelines", pipelines.router)
api.add_router("/import-profiles", profiles.router)
api.add_router("/tokens", tokens.router)
api.add_router("/webhooks", webhooks.router)
api.add_router("/audit", audit.router)
api.add_router("/exports", exports.router)
