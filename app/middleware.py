"""Attribute every write made while serving a request to its user and entry point, give each
request an id (``RequestIdMiddleware``), refuse malformed input (``InputGuardMiddleware``),
route reads to the read replica or the primary (``ReplicaRoutingMiddleware``), set the
Content-Security-Policy built once (``CSPMiddleware``)."""

import contextlib
import functools
import json
import re
from collections.abc import Callable

from csp import middleware as csp
from csp.constants import HEADER, HEADER_REPORT_ONLY
from csp.utils import build_policy
from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse, JsonResponse

from . import request_id
from .core import dbrouter
from .core.context import change_context
from .core.inputs import (
    MAX_JSON_DEPTH,
    MAX_UPLOAD_BYTES,
    control_char_problem,
    json_depth,
    json_depth_message,
    unstorable_path,
)
from .selectors import replica


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


class ReplicaRoutingMiddleware:
    """Give each request its routing state (``app.core.dbrouter``): reads use the primary
    unless a read-only view says otherwise (``app.selectors.replica.replica_reads``). After
    a request that wrote (a successful unsafe method, or any write the router saw), its
    client reads its own writes from the primary for a while (read-your-writes). A GET that
    failed because the replica did is served again from the primary."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        state, response = self._serve(request)
        if response.status_code >= 500 and state.replica and replica.failed_in_request():
            # The replica failed midway through a read-only request: once more, from the
            # primary (the replica is marked down, or this request is pinned).
            wrote = state.wrote
            state, response = self._serve(request, dbrouter.Routing(pinned=True, wrote=wrote))
        unsafe = request.method not in ("GET", "HEAD", "OPTIONS", "TRACE")
        if state.wrote or (unsafe and response.status_code < 400):
            replica.remember_write(request)
        return response

    def _serve(
        self, request: HttpRequest, state: dbrouter.Routing | None = None
    ) -> tuple[dbrouter.Routing, HttpResponse]:
        state = state or dbrouter.Routing()
        token = dbrouter.current.set(state)
        try:
            return state, self.get_response(request)
        finally:
            dbrouter.current.reset(token)


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


class InputGuardMiddleware:
    """Refuse malformed input before any view, in one place, with a clear 4xx:

    * a body over ``DATA_UPLOAD_MAX_MEMORY_SIZE`` (multipart: ``MAX_UPLOAD_BYTES`` more for
      the file) -> 413;
    * NUL in the URL path, or a control character in a query parameter -> 400 naming it;
    * JSON nested deeper than ``MAX_JSON_DEPTH`` -> 400;
    * NUL or a lone surrogate in a JSON body (no database stores them) -> 400 naming its
      location, except for views that record refused input themselves
      (``records_refused_input = True``: the pipeline execute view records the run).

    Other control characters in a path are left to the URL's parameter types, so a legacy
    product whose SKU holds a tab stays reachable. Field rules live in ``app.core.domain``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refusal = self._refusal(request)
        if refusal is not None:
            return _refuse(request, *refusal)
        return self.get_response(request)

    def process_view(self, request: HttpRequest, view_func, view_args, view_kwargs):
        view_class = getattr(view_func, "view_class", view_func)
        if getattr(view_class, "records_refused_input", False):
            return None
        data = getattr(request, "_input_guard_json", None)
        if data is None:
            return None
        found = unstorable_path(data)
        if found is None:
            return None
        loc, char = found
        return _refuse(
            request,
            400,
            "The JSON body holds a character that cannot be stored.",
            ["body", *loc],
            f"{char} is not allowed in text",
        )

    def _refusal(self, request: HttpRequest) -> tuple | None:
        if "\x00" in request.path:
            return 400, "The URL path holds NUL.", ["path"], "NUL is not allowed in a URL path"
        try:
            for key, values in request.GET.lists():
                for value in [key, *values]:
                    problem = control_char_problem(value, what=f"query parameter {key!r}")
                    if problem:
                        return 400, "Invalid query string.", ["query", key], problem
            body = self._read_body(request)
        except RequestDataTooBig:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            return 413, f"Request body too large (limit {limit} bytes).", [], ""
        if body is None:
            return None
        if json_depth(body) > MAX_JSON_DEPTH:
            return 400, json_depth_message() + ".", ["body"], json_depth_message()
        if _MAYBE_UNSTORABLE.search(body):
            with contextlib.suppress(ValueError, UnicodeDecodeError):  # the view reports it
                request._input_guard_json = json.loads(body)
        return None

    @staticmethod
    def _read_body(request: HttpRequest) -> bytes | None:
        """The raw body if it may be JSON, read now so RequestDataTooBig surfaces here; a
        form POST is parsed now instead (multipart files do not count towards the limit)."""
        if request.method in ("GET", "HEAD", "OPTIONS", "TRACE"):
            return None
        content_type = request.content_type or ""
        if request.method == "POST" and content_type in _FORM_TYPES:
            limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
            try:
                length = int(request.META.get("CONTENT_LENGTH") or 0)
            except ValueError:
                length = 0
            if limit is not None and length > limit + MAX_UPLOAD_BYTES:
                raise RequestDataTooBig
            request.POST  # noqa: B018 (a field over the limit raises here)
            return None
        body = request.body
        return body if body.lstrip()[:1] in (b"{", b"[") else None


_FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")
# A JSON escape of NUL or of a surrogate (only then is the body parsed to locate it).
_MAYBE_UNSTORABLE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")


def _refuse(request: HttpRequest, status: int, detail: str, loc: list, msg: str) -> HttpResponse:
    errors = [{"loc": loc, "msg": msg}] if msg else []
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": detail, "errors": errors}, status=status)
    text = detail if not msg else f"{detail} {msg}."
    return HttpResponse(text, status=status, content_type="text/plain; charset=utf-8")


# What makes one response's policy its own (django-csp's decorators set these on it).
_OWN_POLICY = tuple(
    f"_csp_{part}{ro}" for part in ("config", "update", "replace", "exempt") for ro in ("", "_ro")
)


@functools.cache
def _site_policies() -> tuple[str, str]:
    """The settings' policy and report-only policy, as django-csp builds them with no
    per-response parts and no nonce (emptied when a setting changes)."""
    return build_policy(), build_policy(report_only=True)


def _settings_changed(*, setting: str, **kwargs) -> None:
    if setting.startswith("CONTENT_SECURITY_POLICY") or setting == "DEBUG":
        _site_policies.cache_clear()


setting_changed.connect(_settings_changed, dispatch_uid="app.middleware.csp_settings")


class CSPMiddleware(csp.CSPMiddleware):
    """django-csp's middleware, with the site's policy built once instead of per response
    (building it was about a twentieth of an API request's CPU). A response with a policy
    of its own (django-csp's decorators), a request that used its nonce, or DEBUG (where
    django-csp leaves some errors alone) go through django-csp unchanged."""

    def process_response(self, request: HttpRequest, response: HttpResponse) -> HttpResponse:
        if (
            settings.DEBUG
            or getattr(request, "_csp_nonce", None) is not None
            or any(hasattr(response, name) for name in _OWN_POLICY)
        ):
            return super().process_response(request, response)
        policy, report_only = _site_policies()
        for header, value, setting in (
            (HEADER, policy, "CONTENT_SECURITY_POLICY"),
            (HEADER_REPORT_ONLY, report_only, "CONTENT_SECURITY_POLICY_REPORT_ONLY"),
        ):
            if value and header not in response:
                prefixes = (getattr(settings, setting, None) or {}).get("EXCLUDE_URL_PREFIXES")
                if not prefixes or not request.path_info.startswith(tuple(prefixes)):
                    response[header] = value
        # As django-csp: a nonce asked for after the header is written is an error.
        request.csp_nonce = csp.CheckableLazyObject(self._csp_nonce_post_response)
        return response
