import os

import environ
import pytest
from django.core.management import call_command
from django.db import connection
from django.test import TestCase, TransactionTestCase
from hypothesis import HealthCheck, Phase, settings

from tests.smtp import SmtpServer

# Transactional tests may also read the "replica" alias (in tests a mirror of the test
# database, see stockpipe/settings/test.py): their page and list reads go there through the
# router, as in a deployment with DATABASE_REPLICA_URL. Other tests run in a transaction of
# "default", which the router never leaves (a transaction reads its own writes).
TransactionTestCase.databases = {"default", "replica"}
TestCase.databases = {"default"}


# The Redis databases the tests write to, one per owner, all from here: two runs at once (the
# SQLite and PostgreSQL stages, or two checkouts) must not flush each other's data. Without
# TEST_REDIS_DB_BASE each owner keeps its historical number; with it, owner i gets
# TEST_REDIS_DB_BASE + i (a block of len(set(...)) databases), e.g. 0 for one run and 9 for
# another if the server has enough databases (redis-server --databases). TEST_REDIS_HOST_URL
# (default redis://127.0.0.1:6379) names the server. The deployed-configuration stage
# (scripts/test-deployed, DB 7) and benchmarks/reservations.py (DB 8) are configured apart.
REDIS_DB_DEFAULTS = {
    # owner: (offset in a TEST_REDIS_DB_BASE block, historical number)
    "webhooks": (0, 3),  # tests/webhooks/test_subscription_cache.py
    "security": (1, 4),  # tests/security/conftest.py (production cache)
    "streaming_replica": (1, 4),  # tests/replica/test_streaming_replica.py (gunicorn's cache)
    "production_settings": (2, 5),  # tests/security/test_production_settings.py
    "deployment": (3, 6),  # tests/reliability/deployment.py (deploy/run stack); not 8,
    # benchmarks/reservations.py's default (tests/foundation/test_redis_databases.py)
    "response_cache": (4, 9),  # tests/api/test_response_cache.py
    "near_cache": (5, 10),  # tests/foundation/test_near_cache.py
    "machines_cache": (6, 11),  # tests/reliability/test_several_machines.py
    "write_entry": (7, 12),  # tests/replica/test_write_entry.py
    "rq": (8, 13),  # tests/reliability (RQ queues)
}


def redis_test_db(owner: str) -> int:
    """The Redis database number ``owner`` (a key of ``REDIS_DB_DEFAULTS``) may use and flush."""
    offset, historical = REDIS_DB_DEFAULTS[owner]
    base = os.environ.get("TEST_REDIS_DB_BASE", "").strip()
    if not base:
        return historical
    if not base.isdigit():
        raise ValueError(f"TEST_REDIS_DB_BASE must be a database number, not {base!r}")
    return int(base) + offset


def redis_test_url(owner: str) -> str:
    """``redis://host:port/<db>`` for ``owner``'s database (see ``redis_test_db``)."""
    server = os.environ.get("TEST_REDIS_HOST_URL", "redis://127.0.0.1:6379").rstrip("/")
    return f"{server}/{redis_test_db(owner)}"


def _check_redis_databases() -> None:
    """With TEST_REDIS_DB_BASE, the block must exist on the server: say so up front instead
    of failing test by test with "DB index is out of range"."""
    if not os.environ.get("TEST_REDIS_DB_BASE", "").strip():
        return
    import redis

    try:
        highest = max(redis_test_db(owner) for owner in REDIS_DB_DEFAULTS)
    except ValueError as error:
        raise pytest.UsageError(str(error)) from None
    url = redis_test_url("webhooks").rsplit("/", 1)[0]
    try:
        client = redis.Redis.from_url(url)
        available = int(client.config_get("databases")["databases"])
        client.close()
    except redis.RedisError:
        return  # no server (or CONFIG refused): the tests that need Redis say so themselves
    if highest >= available:
        raise pytest.UsageError(
            f"TEST_REDIS_DB_BASE={os.environ['TEST_REDIS_DB_BASE']} needs Redis databases up "
            f"to {highest}, the server at {url} has {available} (0-{available - 1})"
        )


# Hypothesis: each property test names its full number of examples, which SQLite runs; on
# PostgreSQL (the same tests a second time, an example costing about twice as much) it runs
# HYPOTHESIS_POSTGRESQL_SHARE of them (at least 10), which keeps scripts/test within its
# 30 minutes. The derandomized tests then try the first part of the same
# sequence of examples. TEST_HYPOTHESIS_SHARE=1 runs the full count on any database (before
# touching PostgreSQL-only code paths, or in a nightly run); 0.1 makes a quick run.
HYPOTHESIS_POSTGRESQL_SHARE = 0.25


def hypothesis_examples(full: int) -> int:
    """``max_examples`` for a property test whose full run is ``full`` examples, scaled to
    this run's database (read when the test module is imported, after Django's setup)."""
    share = os.environ.get("TEST_HYPOTHESIS_SHARE", "").strip()
    if share:
        try:
            factor = float(share)
        except ValueError:
            raise ValueError(f"TEST_HYPOTHESIS_SHARE must be a number, not {share!r}") from None
        if not 0 < factor <= 1:
            raise ValueError(f"TEST_HYPOTHESIS_SHARE must be in (0, 1], not {share!r}")
    else:
        factor = HYPOTHESIS_POSTGRESQL_SHARE if connection.vendor == "postgresql" else 1.0
    return min(full, max(10, round(full * factor)))


def behind_transaction_pooler() -> bool:
    """Whether the tests reach PostgreSQL through PgBouncer, as the environment says
    (``DATABASE_TRANSACTION_POOLING``, which scripts/test sets with the pooler's URL)."""
    return connection.vendor == "postgresql" and environ.Env().bool(
        "DATABASE_TRANSACTION_POOLING", default=False
    )


def _end_pooled_server_connections(database: str) -> None:
    """PgBouncer keeps idle server connections to the test database in its pool, and
    PostgreSQL refuses to drop (or re-create) a database with sessions: end them first,
    from a connection to the ``postgres`` database (through the pooler too)."""
    if not behind_transaction_pooler():
        return
    with connection._nodb_cursor() as cursor:
        cursor.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            [database],
        )


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings, django_db_blocker):
    """Before the test database is created (a leftover one is dropped first)."""
    with django_db_blocker.unblock():
        _end_pooled_server_connections(connection.creation._get_test_db_name())


def pytest_configure(config):
    _check_redis_databases()


def pytest_addoption(parser):
    parser.addoption(
        "--partitioned",
        action="store_true",
        help="PostgreSQL: partition price history, ledger and outbox by month "
        "(manage.py partition_tables --apply) once the test database exists",
    )


def partitioned_run(config) -> bool:
    """Whether this run's test database was partitioned (``--partitioned`` on PostgreSQL)."""
    return config.getoption("partitioned") and connection.vendor == "postgresql"


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker, request):
    """With ``--partitioned``, the new test database's tables are partitioned first; after
    the tests, before the test database is dropped, pooled connections end."""
    if partitioned_run(request.config):
        with django_db_blocker.unblock():
            call_command("partition_tables", apply=True, ahead=3, verbosity=0)
    yield
    with django_db_blocker.unblock():
        connection.close()
        _end_pooled_server_connections(connection.settings_dict["NAME"])


@pytest.fixture(autouse=True)
def _no_scheduled_sweeps():
    """A process remembers the reservation sweeps whose task it committed, to enqueue no
    other for the same second (app.services.reservations); a test's rollback or flush
    removes those rows, which production never does before they run."""
    from app.services.reservations import forget_scheduled_sweeps

    forget_scheduled_sweeps()
    yield
    forget_scheduled_sweeps()


@pytest.fixture
def smtp_server(settings):
    """A live SMTP server on 127.0.0.1 that Django's SMTP backend talks to."""
    server = SmtpServer()
    server.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_TIMEOUT = 5
    yield server
    server.stop()


@pytest.fixture
def run_worker(monkeypatch):
    """Run the real django-tasks database worker in-process until the queue is empty.

    The worker recycles connections between tasks like a request would; inside a test's
    transaction that would close the test's connection, so only that call is neutralised,
    as Django's own test client does for request_finished. Worker processes started by the
    reliability tests run unmodified.
    """
    from django_tasks_db.management.commands import db_worker

    monkeypatch.setattr(db_worker, "close_old_connections", lambda: None)

    def run() -> None:
        call_command(
            "db_worker", batch=True, interval=0, startup_delay=False, reload=False, verbosity=0
        )

    return run


def pytest_collection_modifyitems(config, items):
    """Tests marked ``postgres`` exercise PostgreSQL-only behaviour: they are deselected
    (not skipped) on SQLite runs, and tests marked ``sqlite`` on PostgreSQL runs;
    ``scripts/test`` runs the suite on both databases. Tests marked ``unpooled`` are
    deselected behind PgBouncer and run on the direct connection."""
    if connection.vendor == "postgresql":
        excluded = {"sqlite"} | ({"unpooled"} if behind_transaction_pooler() else set())
    else:
        excluded = {"postgres"}
    selected = [item for item in items if not excluded & set(item.keywords)]
    deselected = [item for item in items if excluded & set(item.keywords)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = selected


def differential_settings(full: int) -> settings:
    """Hypothesis settings of a differential test over database writes (each example runs
    the same operations twice): ``hypothesis_examples(full)`` examples, the same sequence
    on every run (no example database), no deadline, the first failure reported, shrunk,
    without the "explain" phase (it would run the writes again to print them)."""
    return settings(
        max_examples=hypothesis_examples(full),
        derandomize=True,
        database=None,
        deadline=None,
        report_multiple_bugs=False,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
