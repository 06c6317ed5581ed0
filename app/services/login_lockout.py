"""Brute-force protection of every login (``/accounts/login/``, ``/admin/login/`` and
``POST /api/auth/login``), built on django-axes.

All three call ``django.contrib.auth.authenticate``, where axes' backend refuses a locked
client and its signal handlers count failures, so one rule holds everywhere:

* an **account** is locked after ``AXES_FAILURE_LIMIT`` failures for its username from any
  addresses (guessing one password from many machines does not help);
* an **address** is locked after ``STOCKPIPE_LOGIN_ADDRESS_FAILURE_LIMIT`` failures over any
  accounts (password spraying). That limit is higher, so the users behind one address (an
  office NAT) do not lock each other out with a few typos;
* failures count within ``AXES_COOLOFF_TIME``; a lock ends when no failure happened for that
  long. A successful login clears its account's failures (not the address's: one valid
  account must not let a sprayer start afresh).

Failures live in the database (axes' ``AccessAttempt``), so the limits hold across processes
and machines whatever the cache is. The client address is ``client_address``, which the API
throttles use too.
"""

from __future__ import annotations

from axes.backends import AxesStandaloneBackend
from axes.handlers.database import AxesDatabaseHandler
from axes.helpers import get_cool_off
from django.conf import settings
from django.http import HttpRequest

from .. import conf

LOCKED_DETAIL = "Too many failed logins for this account or address; try again later."


def client_address(request: HttpRequest) -> str | None:
    """The client's address: ``REMOTE_ADDR``, or with ``NINJA_NUM_PROXIES`` set, the address
    the outermost trusted proxy saw (``X-Forwarded-For`` counted from the right).

    Without declared proxies the header is ignored: a client could otherwise name a fresh
    address on every request.
    """
    remote = request.META.get("REMOTE_ADDR")
    proxies = getattr(settings, "NINJA_NUM_PROXIES", None) or 0
    forwarded = request.META.get("HTTP_X_FORWARDED_FOR")
    if proxies <= 0 or not forwarded:
        return remote
    hops = [hop.strip() for hop in forwarded.split(",") if hop.strip()]
    return hops[-min(proxies, len(hops))] if hops else remote


def retry_after_seconds(request: HttpRequest | None = None) -> int:
    cool_off = get_cool_off(request)
    return int(cool_off.total_seconds()) if cool_off else 0


class LockoutBackend(AxesStandaloneBackend):
    """Axes' lockout check for logins over HTTP; ``authenticate()`` without a request (the
    test client's ``login()``, a shell) has no client to lock out and is let through to the
    next backend instead of failing."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if request is None:
            return None
        return super().authenticate(request, username=username, password=password, **kwargs)


class LoginLockoutHandler(AxesDatabaseHandler):
    """Axes' database handler with a separate limit per address and a per-account reset.

    ``AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]`` gives one failure count per
    parameter, in that order, compared with one limit; the address count is scaled so that
    it reaches ``AXES_FAILURE_LIMIT`` exactly at the address limit.
    """

    def get_failures(self, request, credentials: dict | None = None) -> int:
        account_limit = settings.AXES_FAILURE_LIMIT
        address_limit = conf.login_address_failure_limit()
        counts = []
        for attempts in self.get_user_attempts(request, credentials):
            failures = sum(attempts.values_list("failures_since_start", flat=True))
            counts.append(failures)
        account = counts[0] if counts else 0
        address = counts[1] if len(counts) > 1 else 0
        # floor(address * A / B) >= A exactly when address >= B.
        return max(account, address * account_limit // address_limit)

    def reset_user_attempts(self, request, credentials: dict | None = None) -> int:
        """After a successful login: forget the account's failures only."""
        username = (credentials or {}).get(settings.AXES_USERNAME_FORM_FIELD)
        if username is None:
            return 0
        return self.reset_attempts(username=username)


__all__ = [
    "LOCKED_DETAIL",
    "LockoutBackend",
    "LoginLockoutHandler",
    "client_address",
]
