"""A URLconf whose views fail, for the request-id and error-logging tests."""

from django.http import HttpRequest, HttpResponse
from django.urls import path
from ninja import NinjaAPI

from app.api.errors import install


def boom(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("page failed on purpose")


def fine(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


api = NinjaAPI(urls_namespace="raising-api")
install(api)


@api.get("/boom")
def api_boom(request: HttpRequest) -> dict:
    raise RuntimeError("api failed on purpose")


urlpatterns = [
    path("boom/", boom),
    path("fine/", fine),
    path("api/", api.urls),
]

handler500 = "app.api.errors.handler500"
