"""``prune`` on a partitioned outbox: a partition wholly older than the cutoff whose rows are
all delivered before it is detached and dropped (its attempts deleted first); every other
row goes, or stays, exactly as row by row."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection

from app.models import WebhookDelivery
from app.models.webhooks import WebhookAttempt
from app.services import partitioning
from app.services.retention import RetentionPolicy, prune
from app.webhooks import services
from tests.partitioning.test_partition_tables import NOW, plain_tables  # noqa: F401
from tests.webhooks.conftest import SECRET

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

TABLE = WebhookDelivery._meta.db_table
BOUND = partitioning.legacy_bound(NOW)  # the legacy partition ends here, then months
LATER = partitioning.add_months(BOUND, 3) + timedelta(days=40)  # "now" of the prunes
BEFORE = LATER - timedelta(days=30)  # the cutoff: the legacy and three months lie before it
OUTBOX_ONLY = RetentionPolicy(
    outbox_days=30, task_result_days=None, run_payload_days=None,
    price_history_days=None, ledger_days=None, audit_days=None,
)  # fmt: skip


def month(n: int, day: int = 3):
    """A time in the ``n``-th month after the legacy partition (0: its first month)."""
    return partitioning.add_months(BOUND, n) + timedelta(days=day)


@pytest.fixture
def outbox():
    """Deliveries in the legacy partition (all delivered: it may go whole), in month 0 (one
    delivered, one pending, one dead), in month 1 (one delivered, one delivered only after
    the cutoff), none in month 2, and one delivered in the default partition."""
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    sub = services.create_subscription(
        url="http://127.0.0.1:9/", events=["price.changed"], secret=SECRET
    )
    delivered, pending, dead = (WebhookDelivery.Status.DELIVERED, WebhookDelivery.Status.PENDING,
                                WebhookDelivery.Status.DEAD)  # fmt: skip
    rows = {}
    for label, created, status, delivered_at in (
        ("legacy-1", NOW - timedelta(days=90), delivered, NOW - timedelta(days=89)),
        ("legacy-2", NOW - timedelta(days=60), delivered, NOW - timedelta(days=60)),
        ("legacy-3", NOW - timedelta(days=2), delivered, NOW - timedelta(days=1)),
        ("m0-delivered", month(0), delivered, month(0, 4)),
        ("m0-pending", month(0, 5), pending, None),
        ("m0-dead", month(0, 6), dead, None),
        ("m1-delivered", month(1), delivered, month(1, 1)),
        ("m1-late", month(1, 5), delivered, BEFORE + timedelta(days=1)),
        ("default", month(3, 1), delivered, month(3, 2)),
    ):
        rows[label] = WebhookDelivery.objects.create(
            subscription=sub, event_type="price.changed", stream="s", data={"n": label},
            created_at=created, status=status, delivered_at=delivered_at,
        )  # fmt: skip
        for number in (1, 2):
            WebhookAttempt.objects.create(delivery=rows[label], number=number, attempted_at=created)
    return rows


def partition_of(pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{TABLE}" WHERE id = %s', [pk])
        return cursor.fetchone()[0]


def names() -> list[str]:
    return [name for name, _, _ in partitioning.partitions(TABLE)]


def test_a_wholly_prunable_partition_is_dropped_the_rest_goes_row_by_row(outbox):
    legacy = partition_of(outbox["legacy-1"].pk)
    month2 = f"{TABLE}_p{month(2):%Y_%m}"
    assert legacy == f"{TABLE}_legacy" and month2 in names()
    assert partition_of(outbox["default"].pk) == f"{TABLE}_default"
    before_names = names()

    said: list[str] = []
    assert prune(OUTBOX_ONLY, now=LATER, dry_run=True, partitions=said)["webhook deliveries"] == 6
    assert said == [
        f"{TABLE}: would drop partition {legacy} (3 delivered rows)",
        f"{TABLE}: would drop partition {month2} (0 delivered rows)",
    ]
    assert names() == before_names and WebhookDelivery.objects.count() == 9  # a dry run

    said = []
    assert prune(OUTBOX_ONLY, now=LATER, partitions=said)["webhook deliveries"] == 6
    assert said == [
        f"{TABLE}: dropped partition {legacy} (3 delivered rows)",
        f"{TABLE}: dropped partition {month2} (0 delivered rows)",
    ]
    assert names() == [name for name in before_names if name not in (legacy, month2)]
    kept = {outbox[label].pk for label in ("m0-pending", "m0-dead", "m1-late")}
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == kept
    assert set(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == kept
    assert WebhookAttempt.objects.count() == 6

    said = []
    assert prune(OUTBOX_ONLY, now=LATER, partitions=said)["webhook deliveries"] == 0
    assert said == []


def test_a_partition_with_a_row_to_keep_stays(outbox):
    # One delivery of the legacy partition is still owed: the partition stays, its delivered
    # rows go one by one.
    WebhookDelivery.objects.filter(pk=outbox["legacy-2"].pk).update(
        status=WebhookDelivery.Status.PENDING, delivered_at=None
    )
    said: list[str] = []
    assert prune(OUTBOX_ONLY, now=LATER, partitions=said)["webhook deliveries"] == 5
    assert f"{TABLE}_legacy" in names()
    assert said == [f"{TABLE}: dropped partition {TABLE}_p{month(2):%Y_%m} (0 delivered rows)"]
    assert WebhookDelivery.objects.filter(pk=outbox["legacy-2"].pk).exists()
    assert WebhookAttempt.objects.filter(delivery_id=outbox["legacy-2"].pk).count() == 2


def test_the_check_under_the_lock_decides(outbox):
    # What changed between the first look and the lock (here: the check says no) wins.
    legacy = f"{TABLE}_legacy"
    assert partitioning.drop_partition(TABLE, legacy, lambda: None) is None
    assert legacy in names() and WebhookDelivery.objects.count() == 9
    assert partitioning.drop_partition(TABLE, legacy, lambda: 3) == 3
    assert legacy not in names() and WebhookDelivery.objects.count() == 6


def test_the_locked_window_is_bounded_and_aggregates_nothing(outbox):
    """While the outbox is locked exclusively (every writer waits), the statements are cut
    at a timeout and only test for an offending row; the rows are counted before."""
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        prune(OUTBOX_ONLY, now=LATER)
    sqls = [q["sql"] for q in queries.captured_queries]
    locks = [i for i, sql in enumerate(sqls) if sql.startswith(f'LOCK TABLE "{TABLE}"')]
    assert len(locks) == 2  # the legacy partition and month 2
    for at in locks:
        assert "SET LOCAL lock_timeout" in sqls[at - 1]
        assert "SET LOCAL statement_timeout" in sqls[at + 1]  # once granted: see below
        locked = sqls[at + 2 : at + 6]
        assert any("DETACH PARTITION" in sql for sql in locked)
        window = locked[: next(i for i, sql in enumerate(locked) if "DETACH" in sql)]
        assert not any("count(" in sql or "bool_and(" in sql for sql in window), window


def test_a_row_changed_after_the_first_look_keeps_the_partition(outbox, monkeypatch):
    """A legacy row that stops qualifying after the unlocked count (here: while its
    attempts are deleted) is seen by the check under the lock: the partition stays."""
    from app.services import retention

    real = retention._delete_attempts_of

    def then_reopen(partition, before):
        real(partition, before)
        if partition.endswith("_legacy"):
            WebhookDelivery.objects.filter(pk=outbox["legacy-2"].pk).update(
                status=WebhookDelivery.Status.PENDING, delivered_at=None
            )

    monkeypatch.setattr(retention, "_delete_attempts_of", then_reopen)
    said: list[str] = []
    prune(OUTBOX_ONLY, now=LATER, partitions=said)
    assert f"{TABLE}_legacy" in names()
    assert said == [f"{TABLE}: dropped partition {TABLE}_p{month(2):%Y_%m} (0 delivered rows)"]
    assert WebhookDelivery.objects.filter(pk=outbox["legacy-2"].pk).exists()


def test_a_check_past_its_timeout_keeps_that_partition_and_prune_goes_on(outbox, monkeypatch):
    """The check under the lock of one partition runs past the statement timeout (here: it
    waits first, as a scan of a large partition would): that drop alone rolls back, prune
    says so and goes on; the partition's rows go row by row, so nothing else changes."""
    from app.services import retention

    monkeypatch.setattr(partitioning, "DROP_CHECK_TIMEOUT", "200ms")
    real = retention._still_qualifies

    def slow_for_legacy(partition, before, rows):
        if partition.endswith("_legacy"):
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_sleep(2)")
        return real(partition, before, rows)

    monkeypatch.setattr(retention, "_still_qualifies", slow_for_legacy)
    said: list[str] = []
    assert prune(OUTBOX_ONLY, now=LATER, partitions=said)["webhook deliveries"] == 6
    legacy, month2 = f"{TABLE}_legacy", f"{TABLE}_p{month(2):%Y_%m}"
    assert said == [
        f"{TABLE}: kept partition {legacy}: its check under the table lock ran past 200ms; "
        "its rows are pruned row by row",
        f"{TABLE}: dropped partition {month2} (0 delivered rows)",
    ]
    assert legacy in names() and month2 not in names()
    kept = {outbox[label].pk for label in ("m0-pending", "m0-dead", "m1-late")}
    assert set(WebhookDelivery.objects.values_list("pk", flat=True)) == kept
    assert set(WebhookAttempt.objects.values_list("delivery_id", flat=True)) == kept


def test_a_wait_for_the_lock_is_retried_not_cut_by_the_statement_timeout(outbox, monkeypatch):
    """Another transaction holds the outbox for a while: the drop waits ``LOCK_TIMEOUT`` and
    tries again (the statement timeout, as long, must not end the wait first and fail)."""
    import threading

    from django.db import connections

    monkeypatch.setattr(partitioning, "LOCK_TIMEOUT", "300ms")
    monkeypatch.setattr(partitioning, "DROP_CHECK_TIMEOUT", "300ms")
    holder = connections.create_connection("default")
    holder.inc_thread_sharing()  # the timer's thread ends its transaction
    holder.set_autocommit(False)
    with holder.cursor() as cursor:
        cursor.execute(f'LOCK TABLE "{TABLE}" IN ACCESS SHARE MODE')
    released = threading.Timer(0.7, holder.rollback)  # within the LOCK_TRIES (3 s)
    released.start()
    try:
        legacy = f"{TABLE}_legacy"
        assert partitioning.drop_partition(TABLE, legacy, lambda: 3) == 3
        assert legacy not in names()
    finally:
        released.join()
        holder.close()
