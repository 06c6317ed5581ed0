"""The answer to a locked-out login (django-axes' ``AXES_LOCKOUT_CALLABLE``): 429, as the
API's JSON error under ``/api/``, as a page elsewhere. The rules are in
``app.services.login_lockout``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from ..api.errors import json_error
from ..services.login_lockout import LOCKED_DETAIL, retry_after_seconds


def lockout_response(
    request: HttpRequest, response: HttpResponse | None = None, credentials: dict | None = None
) -> HttpResponse:
    """429 for a locked login: the API's JSON error under ``/api/``, a page elsewhere."""
    retry_after = retry_after_seconds(request)
    if request.path.startswith("/api/"):
        locked = json_error(429, LOCKED_DETAIL)
    else:
        locked = render(
            request,
            "registration/locked_out.html",
            {"detail": LOCKED_DETAIL, "minutes": max(1, retry_after // 60)},
            status=429,
        )
    if retry_after:
        locked["Retry-After"] = str(retry_after)
    return locked
