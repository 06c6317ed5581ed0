"""``CONN_HEALTH_CHECKS`` on PostgreSQL (``stockpipe/db/base.py``): a kept connection the
server ended is replaced before a request's first query, as with Django's ``SELECT 1``; a
healthy one is checked without a round trip."""

from __future__ import annotations

import time

import pytest
from django.db import DEFAULT_DB_ALIAS, connection, connections

from stockpipe.db.base import DatabaseWrapper

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


def _last_query_and_gone(pid: int, *, terminate: bool = False, notify: bool = False) -> str:
    """From another connection: end ``pid`` (and wait until it is gone) or send it a
    notification; the last statement ``pid`` ran (``pg_stat_activity``), '' once gone."""
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            if terminate:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
                for _ in range(100):
                    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                    if cursor.fetchone()[0] == 0:
                        return ""
                    time.sleep(0.05)
                raise AssertionError(f"backend {pid} still there")
            if notify:
                cursor.execute("NOTIFY stockpipe_health_check")
                time.sleep(0.2)  # delivered to the listener's socket
            cursor.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", [pid])
            return cursor.fetchone()[0]
    finally:
        other.close()


def _next_request_checks() -> None:
    """What a request does with a kept connection: ``close_old_connections`` at its start
    (the check is due again), then the check before its first query."""
    connection.close_if_unusable_or_obsolete()
    assert connection.connection is not None  # kept (CONN_MAX_AGE), not reopened
    connection.close_if_health_check_failed()


def test_the_backend_is_used():
    assert isinstance(connections[DEFAULT_DB_ALIAS], DatabaseWrapper)
    assert connection.health_check_enabled


@pytest.mark.unpooled  # behind PgBouncer the pid is the pooler's, and the pool would heal
def test_a_connection_the_server_ended_is_replaced_before_the_first_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    _last_query_and_gone(pid, terminate=True)
    _next_request_checks()
    with connection.cursor() as cursor:  # no OperationalError: a new connection
        cursor.execute("SELECT pg_backend_pid()")
        assert cursor.fetchone()[0] != pid


@pytest.mark.unpooled
def test_a_healthy_connection_is_checked_without_a_query():
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid() /* last */")
        (pid,) = cursor.fetchone()
    _next_request_checks()
    assert connection.connection.info.backend_pid == pid
    assert _last_query_and_gone(pid) == "SELECT pg_backend_pid() /* last */"


@pytest.mark.unpooled
def test_a_connection_with_something_to_read_is_asked_and_kept():
    """A notification (anything the server sends unasked) makes the check ask the server;
    the connection answers and is kept."""
    with connection.cursor() as cursor:
        cursor.execute("LISTEN stockpipe_health_check")
        cursor.execute("SELECT pg_backend_pid()")
        (pid,) = cursor.fetchone()
    try:
        _last_query_and_gone(pid, notify=True)
        _next_request_checks()
        assert connection.connection.info.backend_pid == pid
        assert _last_query_and_gone(pid) == "SELECT 1"  # Django's check ran
    finally:
        with connection.cursor() as cursor:
            cursor.execute("UNLISTEN *")
