"""The project's URLs plus ``/bench/constant``: the baseline the API is compared with."""

from django.http import JsonResponse
from django.urls import include, path

BODY = {
    "id": 42,
    "sku": "BENCH-00042",
    "name": "Benchmark product 42",
    "price": "19.99",
    "stock": 500,
    "low_stock_threshold": 5,
    "is_low_stock": False,
    "created_at": "2026-01-01T00:00:00Z",
    "updated_at": "2026-01-01T00:00:00Z",
}


def constant(request):
    return JsonResponse(BODY)


urlpatterns = [
    path("bench/constant", constant),
    path("", include("stockpipe.urls")),
]
