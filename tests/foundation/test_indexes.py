"""No index on the history, ledger, alert and outbox tables that another one already serves.

Every index costs each of the many rows these tables receive (``benchmarks/indexes.py``
measures what); a single-column index whose column leads a composite index is served by that
index, so it must not come back (migration 0011 dropped the three there were).
"""

from __future__ import annotations

import pytest
from django.db import connection

TABLES = ("app_pricehistory", "app_stockmovement", "app_stockalert", "app_webhookdelivery")


@pytest.mark.django_db
@pytest.mark.parametrize("table", TABLES)
def test_no_single_column_index_leads_a_composite_one(table):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    indexes = {
        name: c["columns"]
        for name, c in constraints.items()
        if c["index"] and not c["primary_key"] and not c["unique"]
    }
    covered = [
        (single, composite)
        for single, columns in indexes.items()
        if len(columns) == 1
        for composite, others in indexes.items()
        if len(others) > 1 and others[0] == columns[0]
    ]
    assert covered == []
    assert any(len(columns) > 1 for columns in indexes.values()) or table == "app_stockmovement"
