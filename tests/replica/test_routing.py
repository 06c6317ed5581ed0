"""Routing with the test settings' "replica" alias, a mirror of the test database (a second
connection to it; SQLite and PostgreSQL): which alias each request's queries ran on."""

from __future__ import annotations

import logging
import time
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import DEFAULT_DB_ALIAS, connections, router, transaction
from django.test.utils import CaptureQueriesContext

from app.core import dbrouter
from app.models import ApiToken, Product
from app.selectors import replica
from app.services.tokens import create_token
from tests.smtp import free_port

REPLICA = dbrouter.REPLICA


@pytest.fixture(autouse=True)
def fresh_replica_state():
    replica.health.down_until = 0.0
    replica.health.down = False
    yield
    replica.health.down_until = 0.0
    replica.health.down = False


def _token(username: str, *perms: str) -> str:
    user = get_user_model().objects.create_user(username, password="pw")
    user.user_permissions.add(*Permission.objects.filter(codename__in=perms))
    return create_token(user, "t")[1]


def _queries(client, method: str, path: str, token: str, **kwargs) -> dict[str, list[str]]:
    """SQL each alias ran while serving the request."""
    with (
        CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary,
        CaptureQueriesContext(connections[REPLICA]) as replica_queries,
    ):
        response = getattr(client, method)(
            path, HTTP_AUTHORIZATION=f"Bearer {token}", content_type="application/json", **kwargs
        )
    assert response.status_code < 400, response.content
    return {
        "primary": [q["sql"] for q in primary.captured_queries],
        "replica": [q["sql"] for q in replica_queries.captured_queries],
    }


def _on(queries: list[str], table: str) -> bool:
    return any(table in sql for sql in queries)


@pytest.fixture
def product(transactional_db):
    return Product.objects.create(sku="RT-1", name="Routed", price=Decimal("3.00"), stock=9)


def test_list_reads_use_the_replica_and_authentication_the_primary(client, product):
    token = _token("reader")
    ran = _queries(client, "get", "/api/products", token)
    assert _on(ran["replica"], "app_product")
    assert not _on(ran["primary"], "app_product")
    assert _on(ran["primary"], "app_apitoken")  # a revoked token is refused at once
    assert not _on(ran["replica"], "app_apitoken")


def test_pages_read_the_replica(client, product):
    user = get_user_model().objects.create_user("pages", password="pw")
    client.force_login(user)
    # force_login wrote the session outside a request: nothing to read from the primary.
    for path in ("/", "/products/", "/products/RT-1/"):
        with CaptureQueriesContext(connections[REPLICA]) as ran:
            assert client.get(path).status_code == 200
        assert _on([q["sql"] for q in ran.captured_queries], "app_product"), path


def test_writes_details_and_the_admin_use_the_primary(client, product):
    token = _token("editor", "change_product", "view_product")
    for method, path, body in [
        ("patch", "/api/products/RT-1", {"name": "Renamed"}),
        ("get", "/api/products/RT-1", None),
        ("get", "/api/auth/me", None),
    ]:
        ran = _queries(client, method, path, token, **({"data": body} if body else {}))
        assert ran["replica"] == [], (method, path)
    admin = get_user_model().objects.create_superuser("admin", password="pw")
    client.force_login(admin)
    with CaptureQueriesContext(connections[REPLICA]) as ran:
        assert client.get("/admin/app/product/").status_code == 200
    assert ran.captured_queries == []


def test_a_client_that_wrote_reads_the_primary_for_the_window(client, product, settings):
    settings.STOCKPIPE_REPLICA_READ_YOUR_WRITES = 1.0
    writer = _token("writer", "change_product")
    other = _token("other")
    ran = _queries(client, "patch", "/api/products/RT-1", writer, data={"stock": 4})
    wrote = time.monotonic()
    assert _on(ran["primary"], "app_product")

    ran = _queries(client, "get", "/api/products", writer)
    assert _on(ran["primary"], "app_product") and ran["replica"] == []
    assert _on(_queries(client, "get", "/api/products", other)["replica"], "app_product")

    time.sleep(max(0.0, wrote + 1.0 - time.monotonic()))
    # After the window, the replica (here a mirror, so it holds every write) is read again.
    assert _on(_queries(client, "get", "/api/products", writer)["replica"], "app_product")


def test_an_unreachable_replica_falls_back_to_the_primary_logged_once(client, product, caplog):
    token = _token("reader")
    alias = connections[REPLICA]
    saved = dict(alias.settings_dict)
    alias.close()
    if alias.vendor == "sqlite":
        alias.settings_dict["NAME"] = "/nonexistent/stockpipe-replica/db.sqlite3"
    else:
        alias.settings_dict["PORT"] = free_port()  # nothing listens there
    try:
        with caplog.at_level(logging.WARNING, logger="app.selectors.replica"):
            for _ in range(3):
                with CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary:
                    response = client.get("/api/products", HTTP_AUTHORIZATION=f"Bearer {token}")
                assert response.status_code == 200, response.content
                assert response.json()["items"][0]["sku"] == "RT-1"
                assert _on([q["sql"] for q in primary.captured_queries], "app_product")
    finally:
        alias.close()
        alias.settings_dict.clear()
        alias.settings_dict.update(saved)
    warnings = [r for r in caplog.records if "Read replica unavailable" in r.getMessage()]
    assert len(warnings) == 1


def test_router_decisions_outside_views(transactional_db):
    """Outside a request, in a transaction, for select_for_update and after a write: the
    primary. Bookkeeping writes (a token's last use) do not pin the request."""
    assert router.db_for_read(Product) == DEFAULT_DB_ALIAS  # tasks, commands, the shell
    state = dbrouter.Routing(replica=True)
    token = dbrouter.current.set(state)
    try:
        assert router.db_for_read(Product) == REPLICA
        with transaction.atomic():
            assert router.db_for_read(Product) == DEFAULT_DB_ALIAS
        assert router.db_for_write(ApiToken) == DEFAULT_DB_ALIAS
        assert router.db_for_read(Product) == REPLICA and not state.wrote
        assert Product.objects.select_for_update().db == DEFAULT_DB_ALIAS
        assert router.db_for_read(Product) == DEFAULT_DB_ALIAS and state.wrote
    finally:
        dbrouter.current.reset(token)
    assert not router.allow_migrate(REPLICA, "app")


@pytest.mark.postgres
def test_a_replica_failing_midway_serves_the_request_from_the_primary(client, product, caplog):
    """The replica's connection is terminated (as by a crash) just before the list query."""
    token = _token("reader")
    _queries(client, "get", "/api/products", token)  # connected to the replica
    alias = connections[REPLICA]

    def terminate_first(execute, sql, params, many, context):
        alias.execute_wrappers.remove(terminate_first)
        with connections[DEFAULT_DB_ALIAS].cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [alias.connection.info.backend_pid])
        return execute(sql, params, many, context)

    alias.execute_wrappers.append(terminate_first)
    try:
        with (
            caplog.at_level(logging.WARNING, logger="app.selectors.replica"),
            CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary,
        ):
            response = client.get("/api/products", HTTP_AUTHORIZATION=f"Bearer {token}")
    finally:
        if terminate_first in alias.execute_wrappers:
            alias.execute_wrappers.remove(terminate_first)
    assert response.status_code == 200, response.content
    assert response.json()["items"][0]["sku"] == "RT-1"
    assert _on([q["sql"] for q in primary.captured_queries], "app_product")
    assert [r for r in caplog.records if "Read replica unavailable" in r.getMessage()]
    assert replica.health.down
