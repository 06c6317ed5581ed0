"""Finding 6 of issue 12: brute-force protection on every login, by account and by address.

The three entry points (the back-office login page, the admin login and ``POST
/api/auth/login``) are driven through the test client from chosen client addresses.
Limits are lowered so the API login's own rate throttle (10/min) stays out of the way.
The failure that reaches a limit is already answered with the lockout (429).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.test import Client, override_settings

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

PASSWORD = "pw-for-tests-1"
ACCOUNT_LIMIT = 3
ADDRESS_LIMIT = 6


@pytest.fixture(autouse=True)
def _limits():
    with override_settings(
        AXES_FAILURE_LIMIT=ACCOUNT_LIMIT, STOCKPIPE_LOGIN_ADDRESS_FAILURE_LIMIT=ADDRESS_LIMIT
    ):
        yield


def _page(client: Client, username: str, password: str) -> str:
    return _form(client, "/accounts/login/", username, password)


def _admin(client: Client, username: str, password: str) -> str:
    return _form(client, "/admin/login/?next=/admin/", username, password)


def _form(client: Client, url: str, username: str, password: str) -> str:
    response = client.post(url, {"username": username, "password": password})
    if response.status_code == 429:
        return "locked"
    if response.status_code == 302 and "_auth_user_id" in client.session:
        return "ok"
    assert response.status_code == 200, (url, response.status_code)
    return "refused"


def _api(client: Client, username: str, password: str) -> str:
    response = client.post(
        "/api/auth/login",
        {"username": username, "password": password},
        content_type="application/json",
    )
    outcome = {200: "ok", 401: "refused", 429: "locked"}[response.status_code]
    if outcome == "locked":
        body = response.json()
        assert "locked" in body["detail"] or "Too many" in body["detail"]
        assert int(response["Retry-After"]) > 0
    return outcome


ENTRY_POINTS = {"page": _page, "admin": _admin, "api": _api}
Login = Callable[[Client, str, str], str]


@pytest.fixture(params=list(ENTRY_POINTS))
def login(request) -> Login:
    return ENTRY_POINTS[request.param]


def _from(address: str) -> Client:
    return Client(REMOTE_ADDR=address)


def _user(name: str):
    return UserFactory(username=name, is_staff=True)


def test_account_locks_after_failures_from_different_addresses(login):
    _user("victim")
    _user("bystander")
    outcomes = [login(_from(f"10.0.0.{i + 1}"), "victim", "wrong") for i in range(ACCOUNT_LIMIT)]
    assert outcomes == ["refused"] * (ACCOUNT_LIMIT - 1) + ["locked"]
    # The right password, from an address never seen: the account is locked.
    assert login(_from("10.9.9.9"), "victim", PASSWORD) == "locked"
    # Another account from one of the same addresses is not affected.
    assert login(_from("10.0.0.1"), "bystander", PASSWORD) == "ok"


def test_address_locks_after_failures_over_many_accounts(login):
    _user("alice")
    outcomes = [login(_from("10.1.1.1"), f"guess{i}", "wrong") for i in range(ADDRESS_LIMIT)]
    assert outcomes == ["refused"] * (ADDRESS_LIMIT - 1) + ["locked"]
    assert login(_from("10.1.1.1"), "alice", PASSWORD) == "locked"
    assert login(_from("10.1.1.2"), "alice", PASSWORD) == "ok"


def test_users_behind_one_address_do_not_lock_each_other_out_at_the_account_limit(login):
    """An office behind one NAT address: a few typos of several users lock nobody else."""
    _user("carol")
    for name in ("dave", "erin"):
        _user(name)
        for _ in range(ACCOUNT_LIMIT - 1):
            assert login(_from("10.2.2.2"), name, "typo") == "refused"
    assert login(_from("10.2.2.2"), "carol", PASSWORD) == "ok"


def test_success_resets_the_accounts_failures(login):
    _user("frank")
    for _round in range(2):
        for i in range(ACCOUNT_LIMIT - 1):
            assert login(_from(f"10.3.3.{i + 1}"), "frank", "wrong") == "refused"
        assert login(_from("10.3.3.9"), "frank", PASSWORD) == "ok"
    # Without the reset, 2 x (limit - 1) failures would have locked the account by now.


def test_lock_ends_after_the_cool_off(login):
    _user("grace")
    with override_settings(AXES_COOLOFF_TIME=timedelta(seconds=2)):
        for _ in range(ACCOUNT_LIMIT):
            login(_from("10.4.4.4"), "grace", "wrong")
        assert login(_from("10.4.4.5"), "grace", PASSWORD) == "locked"
        time.sleep(2.2)
        assert login(_from("10.4.4.5"), "grace", PASSWORD) == "ok"


def test_failures_count_across_every_entry_point():
    """One rule: failures on the page, the admin and the API add up to one lockout."""
    _user("heidi")
    outcomes = [
        entry(_from(f"10.5.5.{i + 1}"), "heidi", "wrong")
        for i, entry in enumerate([_page, _admin, _api])
    ]
    assert outcomes == ["refused"] * (ACCOUNT_LIMIT - 1) + ["locked"]
    for entry in (_page, _admin, _api):
        assert entry(_from("10.5.5.9"), "heidi", PASSWORD) == "locked"


def test_forwarded_for_is_ignored_without_declared_proxies():
    """A client cannot escape the address lock by naming another address in a header."""
    for i in range(ADDRESS_LIMIT):
        _api(_from("10.6.6.6"), f"guess{i}", "wrong")
    _user("ivan")
    client = Client(REMOTE_ADDR="10.6.6.6", HTTP_X_FORWARDED_FOR="192.0.2.77")
    assert _api(client, "ivan", PASSWORD) == "locked"


def test_behind_one_proxy_a_spoofed_left_hand_address_does_not_escape_the_lock():
    """Production: nginx appends the client's address to X-Forwarded-For; whatever the client
    put on the left of it is not taken as its address."""
    with override_settings(NINJA_NUM_PROXIES=1):
        for i in range(ADDRESS_LIMIT):
            proxied = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.7.7.7")
            _api(proxied, f"guess{i}", "wrong")
        _user("judy")
        spoofed = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.99, 10.7.7.7")
        assert _api(spoofed, "judy", PASSWORD) == "locked"
        elsewhere = Client(REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.7.7.8")
        assert _api(elsewhere, "judy", PASSWORD) == "ok"


@pytest.mark.django_db(transaction=True)
def test_lockout_holds_with_the_production_redis_cache(redis_cache):
    _user("judy")
    for i in range(ACCOUNT_LIMIT - 1):
        assert _api(_from(f"10.7.7.{i + 1}"), "judy", "wrong") == "refused"
    assert _admin(_from("10.7.7.8"), "judy", "wrong") == "locked"
    assert _page(_from("10.7.7.9"), "judy", PASSWORD) == "locked"
    assert _api(_from("10.7.7.9"), "judy", PASSWORD) == "locked"


def test_test_clients_login_without_a_request_still_works():
    """``Client.login()`` calls ``authenticate()`` without a request; it is not an HTTP login."""
    _user("kim")
    client = Client()
    assert client.login(username="kim", password=PASSWORD)
    assert client.get("/").status_code == 200
