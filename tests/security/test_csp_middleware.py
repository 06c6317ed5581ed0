"""``app.middleware.CSPMiddleware`` builds the site's Content-Security-Policy once; every
response must carry exactly the headers django-csp's own middleware gives it: with the
settings' policy, after they change, with a report-only policy and excluded prefixes, with
a response's own policy (django-csp's decorators) and with a nonce."""

from __future__ import annotations

import pytest
from csp.constants import NONCE
from csp.decorators import csp_exempt, csp_update
from csp.middleware import CSPMiddleware as DjangoCSP
from django.http import HttpResponse
from django.test import RequestFactory, override_settings

from app.middleware import CSPMiddleware

HEADERS = ("Content-Security-Policy", "Content-Security-Policy-Report-Only")


def plain(request):
    return HttpResponse("ok")


@csp_update({"img-src": ["https://images.example.com"]})
def own_policy(request):
    return HttpResponse("ok")


@csp_exempt()
def exempt(request):
    return HttpResponse("ok")


def with_nonce(request):
    return HttpResponse(f"<script nonce='{request.csp_nonce}'></script>")


def headers(middleware_class, view, path="/products/") -> dict:
    request = RequestFactory().get(path)
    response = middleware_class(view)(request)
    nonce = getattr(request, "_csp_nonce", None)
    found = {h: response[h] for h in HEADERS if h in response}
    return {h: v.replace(nonce, "NONCE") if nonce else v for h, v in found.items()}


def same_as_django_csp(view, path="/products/") -> dict:
    ours = headers(CSPMiddleware, view, path)
    assert ours == headers(DjangoCSP, view, path)
    return ours


def test_the_site_policy_is_django_csps():
    got = same_as_django_csp(plain)
    assert "default-src 'self'" in got["Content-Security-Policy"]
    assert "Content-Security-Policy-Report-Only" not in got
    assert same_as_django_csp(plain, "/api/reservations") == got


@pytest.mark.parametrize("view", [own_policy, exempt, with_nonce])
def test_a_response_with_its_own_policy_or_a_nonce_is_left_to_django_csp(view):
    got = same_as_django_csp(view)
    if view is own_policy:
        assert "https://images.example.com" in got["Content-Security-Policy"]
    if view is exempt:
        assert "Content-Security-Policy" not in got
    if view is with_nonce:  # the site's policy has no nonce: django-csp adds none
        assert "nonce" not in got["Content-Security-Policy"]


def test_a_nonce_the_policy_asks_for_is_django_csps():
    policy = {"DIRECTIVES": {"default-src": ["'self'"], "script-src": ["'self'", NONCE]}}
    with override_settings(CONTENT_SECURITY_POLICY=policy):
        got = same_as_django_csp(with_nonce)
        assert "'nonce-NONCE'" in got["Content-Security-Policy"]
        assert "nonce" not in same_as_django_csp(plain)["Content-Security-Policy"]


def test_a_changed_setting_is_the_policy_at_once():
    before = same_as_django_csp(plain)
    policy = {"DIRECTIVES": {"default-src": ["'none'"]}, "EXCLUDE_URL_PREFIXES": ["/api/"]}
    report = {"DIRECTIVES": {"default-src": ["'self'"], "report-uri": "/csp"}}
    with override_settings(
        CONTENT_SECURITY_POLICY=policy, CONTENT_SECURITY_POLICY_REPORT_ONLY=report
    ):
        got = same_as_django_csp(plain)
        assert got["Content-Security-Policy"] == "default-src 'none'"
        assert "report-uri /csp" in got["Content-Security-Policy-Report-Only"]
        excluded = same_as_django_csp(plain, "/api/reservations")
        assert "Content-Security-Policy" not in excluded
        assert "Content-Security-Policy-Report-Only" in excluded
    assert same_as_django_csp(plain) == before
