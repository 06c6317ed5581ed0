"""Authentication, permissions and throttling of the API, plus session login.

Two ways in: ``Authorization: Bearer <token>`` (scripts; tokens are stored hashed, see
``app.services.tokens``) and the Django session (browsers; unsafe methods need the CSRF
token). No credentials means 401; credentials without the model permission mean 403.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth import authenticate, login, logout
from django.http import HttpRequest
from django.middleware.csrf import get_token
from ninja import Router, Schema, Status
from ninja.errors import AuthorizationError, HttpError
from ninja.security import APIKeyCookie, HttpBearer
from ninja.throttling import SimpleRateThrottle
from ninja.utils import check_csrf
from pydantic import Field

from .. import conf
from ..core.context import change_context
from ..services import cache_guard
from ..services.login_lockout import LOCKED_DETAIL, client_address
from ..services.tokens import cache_key as token_cache_key
from ..services.tokens import has_bearer, user_for_token
from .errors import ErrorOut, responses


class BearerToken(HttpBearer):
    """``Authorization: Bearer sp_...``: an API token of an active user.

    ``read_ahead(request)`` names cache keys the operation will read: they are fetched in
    the token's round trip to the shared cache and left in ``request.cache_entries``.
    """

    def __init__(self, read_ahead: Callable[[HttpRequest], list[str]] | None = None) -> None:
        super().__init__()
        self.read_ahead = read_ahead

    def authenticate(self, request: HttpRequest, token: str) -> Any:
        if not token:
            return None
        if self.read_ahead is None or not cache_guard.enabled():
            return user_for_token(token)
        key = token_cache_key(token)
        request.cache_entries = cache_guard.get_many([key, *self.read_ahead(request)])
        return user_for_token(token, entry=request.cache_entries[key])


class SessionCookie(APIKeyCookie):
    """The Django session; CSRF is enforced for unsafe methods of logged-in users only.

    Ninja's ``SessionAuth`` checks CSRF before looking at the session, which answers an
    anonymous POST with 403; checking the session first keeps 401 for "not logged in".
    """

    param_name = settings.SESSION_COOKIE_NAME

    def _get_key(self, request: HttpRequest) -> str | None:
        return request.COOKIES.get(self.param_name)

    def authenticate(self, request: HttpRequest, key: str | None) -> Any:
        user = getattr(request, "user", None)
        if user is None or not user.is_authenticated:
            return None
        if has_bearer(request):
            return None  # the token decides alone; a wrong one is 401, not the cookie's user
        if not getattr(request, "_ninja_csrf_exempt", False) and check_csrf(request):
            raise HttpError(403, "CSRF check failed.")
        return user


bearer = BearerToken()
session = SessionCookie()
AUTH = [bearer, session]
SESSION_ONLY = [session]


def require_perm(request: HttpRequest, *perms: str) -> None:
    """403 unless the authenticated user has every permission in ``perms``."""
    user = request.auth
    if not user.has_perms(perms):
        raise AuthorizationError(message=f"Permission denied: requires {', '.join(perms)}.")


def attribute_to_auth_user(view: Callable) -> Callable:
    """Attribute writes of token-authenticated requests to the token's user.

    The middleware already opened a change context with the session user (or nobody);
    Ninja authenticates bearer tokens later, so operations re-enter it with ``request.auth``.
    """

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
        user = getattr(request, "auth", None)
        if user is None:
            return view(request, *args, **kwargs)
        with change_context(user=user, source="api"):
            return view(request, *args, **kwargs)

    return wrapper


class ScopedRateThrottle(SimpleRateThrottle):
    """Requests per client address (or per user, if authenticated) in one scope."""

    def __init__(self, scope: str, rate: str) -> None:
        self.scope = scope
        super().__init__(rate)

    def get_ident(self, request: HttpRequest) -> str | None:
        # The address the login lockout counts too (X-Forwarded-For only behind declared
        # proxies: Ninja's own get_ident would let a client pick a fresh identity per request).
        return client_address(request)

    def get_cache_key(self, request: HttpRequest) -> str | None:
        user = getattr(request, "auth", None)
        ident = f"user-{user.pk}" if user is not None else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


login_throttle = ScopedRateThrottle("login", conf.login_throttle_rate())
token_throttle = ScopedRateThrottle("token-create", conf.token_throttle_rate())


router = Router(tags=["auth"])

SafeText = Field(min_length=1, max_length=150, pattern=r"^[^\x00]+$")


class LoginIn(Schema):
    username: str = SafeText
    password: str = Field(min_length=1, max_length=4096, pattern=r"^[^\x00]+$")


class UserOut(Schema):
    id: int
    username: str
    is_staff: bool
    permissions: list[str]


class CsrfOut(Schema):
    csrf_token: str


def _user_out(user) -> dict:
    return {
        "id": user.pk,
        "username": user.get_username(),
        "is_staff": user.is_staff,
        "permissions": sorted(user.get_all_permissions()),
    }


def _require_csrf(request: HttpRequest) -> None:
    if check_csrf(request):
        raise HttpError(403, "CSRF check failed.")


@router.get("/csrf", response=CsrfOut, auth=None)
def csrf(request: HttpRequest):
    """Set the CSRF cookie and return the token to send as ``X-CSRFToken``."""
    return {"csrf_token": get_token(request)}


@router.post(
    "/login",
    response={200: UserOut, **responses(400, 401, 403, 422, 429)},
    auth=None,
    throttle=[login_throttle],
)
def session_login(request: HttpRequest, payload: LoginIn):
    """Log in with username and password and start a session (CSRF token required).

    The login forms' lockout applies (``app.services.login_lockout``): 429 while the account
    or the client address is locked; the throttle limits the request rate besides.
    """
    _require_csrf(request)
    user = authenticate(request, username=payload.username, password=payload.password)
    if getattr(request, "axes_locked_out", False):
        raise HttpError(429, LOCKED_DETAIL)
    if user is None:
        raise HttpError(401, "Invalid username or password.")
    login(request, user)
    return _user_out(user)


@router.post("/logout", response={204: None, **responses(401, 403)}, auth=SESSION_ONLY)
def session_logout(request: HttpRequest):
    logout(request)
    return Status(204, None)


@router.get("/me", response={200: UserOut, **responses(401)}, auth=AUTH)
def me(request: HttpRequest):
    """Who the request is authenticated as, and their permissions."""
    return _user_out(request.auth)


__all__ = [
    "AUTH",
    "SESSION_ONLY",
    "ErrorOut",
    "attribute_to_auth_user",
    "require_perm",
    "router",
    "token_throttle",
]
