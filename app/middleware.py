"""Attribute every write made while serving a request to its user and entry point."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from . import request_id
from .services.context import change_context


def _source_for(path: str) -> str:
    if path.startswith("/admin/"):
        return "admin"
    if path.startswith("/api/"):
        return "api"
    return "web"


class ChangeContextMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        # request.user is lazy; the API's token auth sets its own user inside the view.
        with change_context(user=request.user, source=_source_for(request.path)):
            return self.get_response(request)


class RequestIdMiddleware:
    """Give each request an id (nginx's ``X-Request-ID`` when sane, else a new one), expose
    it to logging (``app.request_id.RequestIdFilter``) and return it on every response.
    First in MIDDLEWARE, so redirects and errors of the other middleware carry it too."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.request_id = request_id.incoming_or_new(request)
        token = request_id.current.set((request.request_id, request.path))
        try:
            response = self.get_response(request)
        finally:
            request_id.current.reset(token)
        response[request_id.HEADER] = request.request_id
        return response
