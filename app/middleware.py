"""Attribute every write made while serving a request to its user and entry point."""

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

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
