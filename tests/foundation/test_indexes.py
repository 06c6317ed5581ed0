"""No index on the project's tables that another one already serves.

Every index costs each row a table receives (``benchmarks/indexes.py`` measures what for the
history, ledger, alert and outbox tables); a single-column index whose column leads a
composite index or unique constraint is served by it, so it must not come back (migration
0011 dropped three on the history tables, 0015 the product indexes of stock levels and
reservations).
"""

from __future__ import annotations

import pytest
from django.apps import apps
from django.db import connection

HISTORY_TABLES = ("app_pricehistory", "app_stockmovement", "app_stockalert", "app_webhookdelivery")


def _covered(table: str) -> list[tuple[str, str]]:
    """(single-column index, the composite index or unique constraint leading with its column)."""
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, table)
    singles = {
        name: c["columns"][0]
        for name, c in constraints.items()
        if c["index"] and not c["primary_key"] and not c["unique"] and len(c["columns"]) == 1
    }
    composites = {
        name: c["columns"][0]
        for name, c in constraints.items()
        if (c["index"] or c["unique"]) and len(c["columns"]) > 1 and name not in _partial()
    }
    return [
        (single, composite)
        for single, column in singles.items()
        for composite, lead in composites.items()
        if lead == column
    ]


def _partial() -> set[str]:
    """Indexes and constraints with a condition: they serve only the rows it selects."""
    return {
        item.name
        for model in apps.get_app_config("app").get_models()
        for item in [*model._meta.indexes, *model._meta.constraints]
        if getattr(item, "condition", None) is not None
    }


@pytest.mark.django_db
def test_no_single_column_index_leads_a_composite_one():
    with connection.cursor() as cursor:
        tables = [t for t in connection.introspection.table_names(cursor) if t.startswith("app_")]
    assert set(HISTORY_TABLES) <= set(tables)
    assert {table: _covered(table) for table in tables} == {table: [] for table in tables}
