"""Shared fixtures: the webhook receiver and subscriptions of tests/webhooks, and a way to
give a row a value the ORM cannot read back (a legacy row written outside the app)."""

import pytest
from django.db import connection

from tests.webhooks.conftest import (  # noqa: F401 - fixtures used by this package's tests
    _fresh_subscription_cache,
    deliver,
    receiver,
    subscribe,
)

# A timestamp each database stores but Django cannot turn into a datetime on reading.
_UNREADABLE_TIMESTAMP = {"postgresql": "infinity", "sqlite": "2026-13-45 00:00:00"}
# A JSON number with more digits than Python converts to int (sys.get_int_max_str_digits).
UNREADABLE_JSON = '{"n": 1' + "0" * 5000 + "}"


@pytest.fixture
def corrupt():
    """``corrupt(obj, column)`` stores an unreadable value in one row's column, bypassing
    the ORM as a legacy import or a hand-made fix would."""

    def store(obj, column):
        table = connection.ops.quote_name(obj._meta.db_table)
        field = obj._meta.get_field(column)
        if field.get_internal_type() == "JSONField":
            value, placeholder = UNREADABLE_JSON, "%s"
            if connection.vendor == "postgresql":
                placeholder = "CAST(%s AS jsonb)"
        else:
            value, placeholder = _UNREADABLE_TIMESTAMP[connection.vendor], "%s"
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE {table} SET {connection.ops.quote_name(field.column)} = {placeholder} "
                "WHERE id = %s",
                [value, obj.pk],
            )

    return store
