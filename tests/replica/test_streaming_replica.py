"""Read replicas against a real streaming replica (tests/replica/conftest.py): gunicorn with
two workers, ``DATABASE_URL`` the test database on the primary, ``DATABASE_REPLICA_URL`` the
same database on the hot standby, Redis as the shared cache.

Which database answered is told by a state only one of them has: replay on the replica is
paused (``pg_wal_replay_pause()``), then the primary changes a product, so the replica still
shows the old state.
"""

from __future__ import annotations

import http.cookiejar
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.contrib.auth.models import Permission
from django.db import connection

from app.models import Product
from app.services.tokens import create_token
from tests.conftest import redis_test_url
from tests.reliability.conftest import Processes, wait_until

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

WINDOW = 2.0  # STOCKPIPE_REPLICA_READ_YOUR_WRITES of the server
RETRY = 3.0  # STOCKPIPE_REPLICA_RETRY of the server
CACHE_URL = redis_test_url("streaming_replica")
FALLBACK_LOG = "Read replica unavailable"


@pytest.fixture(scope="module")
def server(streaming_replica, tmp_path_factory):
    """gunicorn (2 workers) reading lists and pages from the replica."""
    procs = Processes(tmp_path_factory.mktemp("replica-server"))
    name = connection.settings_dict["NAME"]
    procs.env = _with_replica(procs.env, streaming_replica.url(name))
    url = procs.web(workers=2)
    procs.url = url
    procs.log = next(procs.log_dir.glob("*-gunicorn.log"))
    yield procs
    procs.stop_all()


def _with_replica(env, replica_url):
    def with_replica(**extra: str) -> dict[str, str]:
        return env(
            **{
                **extra,
                "DATABASE_REPLICA_URL": replica_url,
                "CACHE_URL": CACHE_URL,
                "STOCKPIPE_REPLICA_READ_YOUR_WRITES": str(WINDOW),
                "STOCKPIPE_REPLICA_RETRY": str(RETRY),
                # Kept connections: a stopped replica is found by the health check.
                "CONN_MAX_AGE": "60",
                "LOG_LEVEL": "INFO",
            }
        )

    return with_replica


class Client:
    """An HTTP client with either a bearer token or a session (cookies and CSRF)."""

    def __init__(self, base: str, token: str | None = None) -> None:
        self.base = base
        self.token = token
        self.cookies = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.cookies))

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        csrf = next((c.value for c in self.cookies if c.name == "csrftoken"), None)
        if csrf:
            headers["X-CSRFToken"] = csrf
            headers["Referer"] = self.base + "/"
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with self.opener.open(req, timeout=30) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()

    def get(self, path: str) -> str:
        status, text = self.request("GET", path)
        assert status == 200, (path, status, text[:500])
        return text

    def list_names(self) -> list[str]:
        page = json.loads(self.get("/api/products?sku_prefix=RR-"))
        return [item["name"] for item in page["items"]]

    def login(self, username: str, password: str) -> None:
        self.get("/api/auth/csrf")
        status, text = self.request(
            "POST", "/api/auth/login", {"username": username, "password": password}
        )
        assert status == 200, text


def _user(username: str, *perms: str):
    user = get_user_model().objects.create_user(username)
    # The server runs the default hashers, not the tests' fast one.
    hasher = PBKDF2PasswordHasher()
    user.password = hasher.encode("pw-" + username, hasher.salt())
    user.save(update_fields=["password"])
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return user


def _reads(client: Client, times: int = 4) -> set[str]:
    """The names a client's list reads show (repeated: gunicorn has two workers)."""
    return {name for _ in range(times) for name in client.list_names()}


def test_lists_and_pages_read_the_replica_and_a_writer_reads_its_writes(
    streaming_replica, server, transactional_db
):
    writer = Client(server.url, create_token(_user("alice", "change_product"), "w")[1])
    bob = _user("bob", "change_product")
    reader = Client(server.url, create_token(bob, "r")[1])
    browser = Client(server.url)  # bob's session: pages, and API calls with CSRF
    Product.objects.create(sku="RR-1", name="Before pause", price=Decimal("10.00"), stock=50)
    browser.login("bob", "pw-bob")  # a write: this session reads the primary for a while
    logged_in = time.monotonic()

    streaming_replica.pause()
    try:
        Product.objects.filter(sku="RR-1").update(name="Changed on the primary")

        # Routing: the API list and the pages read the replica (the primary has another name).
        assert _reads(reader) == {"Before pause"}
        time.sleep(max(0.0, logged_in + WINDOW - time.monotonic()))
        assert "Before pause" in browser.get("/products/?q=RR")
        assert "Before pause" in browser.get("/products/RR-1/")
        # A detail GET of the API reads the primary (it fills the shared cache).
        assert json.loads(reader.get("/api/products/RR-1"))["name"] == "Changed on the primary"

        # Read-your-writes: the writer's token reads its write while replay is paused, in
        # every process; another client still reads the replica.
        status, text = writer.request("PATCH", "/api/products/RR-1", {"name": "Alice's write"})
        assert status == 200, text
        assert _reads(writer) == {"Alice's write"}
        assert _reads(reader) == {"Before pause"}
        # After the window too: the replica has not replayed the write, so it is not used.
        time.sleep(WINDOW + 0.5)
        assert _reads(writer) == {"Alice's write"}
        assert _reads(reader) == {"Before pause"}

        # The same for a session: its write through the API, then the pages.
        status, text = browser.request("PATCH", "/api/products/RR-1", {"stock": 7})
        assert status == 200, text
        page = browser.get("/products/RR-1/")
        assert "Alice&#x27;s write" in page and '<span class="value">7</span>' in page
        assert _reads(reader) == {"Before pause"}
    finally:
        streaming_replica.resume()

    streaming_replica.wait_caught_up()
    assert _reads(reader) == {"Alice's write"}
    assert _reads(writer) == {"Alice's write"}


def test_a_stopped_replica_falls_back_to_the_primary_logged_once(
    streaming_replica, server, transactional_db
):
    reader = Client(server.url, create_token(_user("carol"), "r")[1])
    browser = Client(server.url)
    browser.login("carol", "pw-carol")
    logged_in = time.monotonic()
    Product.objects.create(sku="RR-2", name="Replicated", price=Decimal("5.00"), stock=5)
    streaming_replica.wait_caught_up()
    assert _reads(reader) == {"Replicated"}  # the workers hold connections to the replica
    time.sleep(max(0.0, logged_in + WINDOW - time.monotonic()))  # the session reads it too
    assert "Replicated" in browser.get("/products/?q=RR")
    logged_before = server.log.read_text().count(FALLBACK_LOG)

    streaming_replica.stop()
    stopped = time.monotonic()
    try:
        Product.objects.filter(sku="RR-2").update(name="Only on the primary")
        for _ in range(5):
            assert _reads(reader) == {"Only on the primary"}  # no 500: the primary answers
        assert "Only on the primary" in browser.get("/products/?q=RR")
        assert "RR-2" in browser.get("/products/RR-2/")
        # One warning per process (two workers) and try (one per RETRY seconds), not one
        # per request or query.
        fallbacks = server.log.read_text().count(FALLBACK_LOG) - logged_before
        tries = 1 + int((time.monotonic() - stopped) // RETRY)
        assert 1 <= fallbacks <= 2 * tries, server.log.read_text()[-3000:]
    finally:
        streaming_replica.start()

    # Once the retry interval has passed, the workers use the replica again, and a worker
    # that fell back says so. Both conditions are awaited together: a worker that served
    # no request during the outage finds the replica up on its next health check without
    # having fallen back, so replica reads alone may all come from it before the other
    # worker's retry is due (CI saw that).
    streaming_replica.pause()
    try:
        Product.objects.filter(sku="RR-2").update(name="Primary again")
        wait_until(
            lambda: (
                _reads(reader, times=2) == {"Only on the primary"}
                and "Read replica reachable again" in server.log.read_text()
            ),
            timeout=RETRY * 6,
            message="the replica to be read again and its return logged",
        )
    finally:
        streaming_replica.resume()
