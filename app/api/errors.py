"""One error shape for the whole API: ``{"detail": str, "errors": [{"loc": [...], "msg": str}]}``.

Every failure under ``/api/`` (validation, auth, 404, throttling, unexpected exceptions)
is rendered here, so clients parse one format and never see an HTML page or a traceback.
Request validation errors are 422 (the body or parameters are well-formed JSON/HTTP but
invalid); a body that is not JSON at all is 400.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.core.exceptions import ObjectDoesNotExist, PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.request import RawPostDataException
from django.views import defaults
from ninja import NinjaAPI, Schema
from ninja.errors import AuthenticationError, HttpError, Throttled, ValidationError

from .. import request_id
from ..services.reservations import ReservationRefused
from ..services.stock import StockAdjustmentRefused

logger = logging.getLogger(__name__)


class ErrorItem(Schema):
    loc: list[str | int]
    msg: str


class ErrorOut(Schema):
    detail: str
    errors: list[ErrorItem]


class StockConflictOut(ErrorOut):
    stock: int | None


class ReservationConflictOut(StockConflictOut):
    available: int | None = None


STATUS_DETAIL = {
    400: "Bad request.",
    401: "Authentication required.",
    403: "Permission denied.",
    404: "Not found.",
    405: "Method not allowed.",
    409: "Conflict.",
    422: "Invalid input.",
    429: "Too many requests.",
    500: "Internal server error.",
}


def error_body(detail: str, errors: list[dict[str, Any]] | None = None, **extra: Any) -> dict:
    return {"detail": detail, "errors": errors or [], **extra}


def json_error(status: int, detail: str | None = None, **extra: Any) -> JsonResponse:
    """An error response outside Ninja operations (unknown URL, wrong method)."""
    return JsonResponse(error_body(detail or STATUS_DETAIL[status], **extra), status=status)


def responses(*codes: int) -> dict[int, Any]:
    """The error part of an operation's ``response=`` mapping, so OpenAPI lists every code."""
    return dict.fromkeys(codes, ErrorOut)


def _validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    items = []
    for err in exc.errors:
        if isinstance(err, dict) and "loc" in err:
            loc = [p if isinstance(p, int) else str(p) for p in err["loc"]]
            items.append({"loc": loc, "msg": str(err.get("msg", "Invalid value"))})
        elif isinstance(err, dict):  # e.g. {"cursor": "Invalid Cursor"}
            items.extend({"loc": [str(k)], "msg": str(v)} for k, v in err.items())
        else:
            items.append({"loc": [], "msg": str(err)})
    return items


def install(api: NinjaAPI) -> None:
    """Register the handlers that map every exception to the error shape."""

    def respond(request: HttpRequest, status: int, body: dict) -> HttpResponse:
        return api.create_response(request, body, status=status)

    @api.exception_handler(ValidationError)
    def validation_error(request, exc: ValidationError):
        return respond(request, 422, error_body(STATUS_DETAIL[422], _validation_errors(exc)))

    @api.exception_handler(AuthenticationError)
    def authentication_error(request, exc: AuthenticationError):
        response = respond(request, 401, error_body(STATUS_DETAIL[401]))
        response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response

    @api.exception_handler(Throttled)
    def throttled(request, exc: Throttled):
        return respond(request, 429, error_body(STATUS_DETAIL[429]))

    @api.exception_handler(HttpError)
    def http_error(request, exc: HttpError):
        return respond(request, exc.status_code, error_body(str(exc)))

    @api.exception_handler(PermissionDenied)
    def permission_denied(request, exc: PermissionDenied):
        return respond(request, 403, error_body(str(exc) or STATUS_DETAIL[403]))

    @api.exception_handler(Http404)
    def not_found(request, exc: Exception):
        return respond(request, 404, error_body(STATUS_DETAIL[404]))

    @api.exception_handler(ObjectDoesNotExist)
    def object_not_found(request, exc: ObjectDoesNotExist):
        return respond(request, 404, error_body(STATUS_DETAIL[404]))

    @api.exception_handler(StockAdjustmentRefused)
    def stock_refused(request, exc: StockAdjustmentRefused):
        body = error_body(exc.message, [{"loc": ["body", exc.field], "msg": exc.message}])
        if exc.status != 409:
            return respond(request, exc.status, body)
        if isinstance(exc, ReservationRefused):
            body["available"] = exc.stock
        return respond(request, 409, {**body, "stock": exc.stock})

    @api.exception_handler(RawPostDataException)
    def form_body(request, exc: RawPostDataException):
        # A form (multipart or urlencoded) sent where a JSON body is expected: the form was
        # parsed before the operation (CSRF check), so its raw bytes are gone.
        kind = request.content_type or "no content type"
        message = f"This operation takes a JSON body (Content-Type: application/json), not {kind}."
        return respond(request, 415, error_body(message, [{"loc": ["body"], "msg": message}]))

    @api.exception_handler(Exception)
    def unexpected(request, exc: Exception):
        logger.exception("Unhandled API error on %s %s", request.method, request.path)
        return respond(request, 500, error_body(STATUS_DETAIL[500], **request_id.field(request)))


def _django_handler(
    status: int, default: Callable[..., HttpResponse]
) -> Callable[..., HttpResponse]:
    """Django's error view for a status, answering JSON under /api/ (errors raised outside
    Ninja: middleware, DisallowedHost, unmatched URLs before the API's catch-all)."""

    def view(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
        if status == 500:  # the request id to quote when reporting it
            if request.path.startswith("/api/"):
                return json_error(status, **request_id.field(request))
            return request_id.server_error(request)
        if request.path.startswith("/api/"):
            return json_error(status)
        return default(request, exception)

    return view


handler400 = _django_handler(400, defaults.bad_request)
handler403 = _django_handler(403, defaults.permission_denied)
handler404 = _django_handler(404, defaults.page_not_found)
handler500 = _django_handler(500, defaults.server_error)
