"""``manage.py partition_tables`` is opt-in: ``--ahead`` (daily cron) never converts a plain
table, and SQLite, which has no partitions, is left alone."""

import io
from datetime import UTC, datetime

import pytest
from django.core.management import CommandError, call_command
from django.db import connection

from app.services import partitioning
from tests.conftest import partitioned_run

pytestmark = pytest.mark.django_db


def test_cron_run_never_converts_and_apply_needs_postgresql(request):
    out = io.StringIO()
    call_command("partition_tables", ahead=3, stdout=out)
    if connection.vendor != "postgresql":
        assert "Not PostgreSQL" in out.getvalue()
        with pytest.raises(CommandError, match="PostgreSQL only"):
            call_command("partition_tables", apply=True, stdout=io.StringIO())
        return
    for spec in partitioning.TABLES:
        assert partitioning.is_partitioned(spec.table) == partitioned_run(request.config)
    with pytest.raises(CommandError, match="give 0 or more months"):
        call_command("partition_tables", ahead=-1)


@pytest.mark.parametrize(
    ("now", "bound"),
    [
        (datetime(2026, 12, 5, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)),
        (datetime(2026, 12, 26, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
        (datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 2, 1, tzinfo=UTC)),
    ],
)
def test_the_old_rows_bound_leaves_at_least_a_week(now, bound):
    """Rows written while a conversion runs (at least a week) fall below the CHECK."""
    assert partitioning.legacy_bound(now) == bound
