"""Behind a transaction pooler (PgBouncer), ``DATABASE_TRANSACTION_POOLING`` turns off the
server-side cursors of ``QuerySet.iterator()``; directly connected, they stream.

``scripts/test`` runs the PostgreSQL suite through PgBouncer, and the tests marked
``server_side_cursors`` once more on a direct connection, so both paths run on PostgreSQL."""

from __future__ import annotations

import contextlib
from decimal import Decimal

import pytest
from django.db import connection, transaction

from app.models import Product
from stockpipe.settings import _database
from tests.conftest import behind_transaction_pooler

URL = "postgres://stockpipe@db.internal:6432/stockpipe"


def test_the_setting_disables_server_side_cursors(monkeypatch):
    monkeypatch.setenv("DATABASE_TRANSACTION_POOLING", "true")
    assert _database(URL)["DISABLE_SERVER_SIDE_CURSORS"] is True
    monkeypatch.setenv("DATABASE_TRANSACTION_POOLING", "false")
    assert _database(URL)["DISABLE_SERVER_SIDE_CURSORS"] is False
    monkeypatch.delenv("DATABASE_TRANSACTION_POOLING")
    assert _database(URL)["DISABLE_SERVER_SIDE_CURSORS"] is False


def open_cursors() -> list[tuple[str, bool]]:
    """This session's server-side cursors (name, WITH HOLD)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name, is_holdable FROM pg_cursors")
        return cursor.fetchall()


@pytest.mark.postgres
@pytest.mark.server_side_cursors
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("in_transaction", [True, False], ids=["in-transaction", "autocommit"])
def test_iterator_streams_through_a_server_side_cursor_unless_pooled(in_transaction):
    """In a transaction, and in autocommit (a WITH HOLD cursor, which outlives the
    transaction that declared it: behind a transaction pooler, the server connection)."""
    Product.objects.bulk_create(
        Product(sku=f"C-{i}", name="c", price=Decimal("1.00"), stock=9) for i in range(5)
    )
    with transaction.atomic() if in_transaction else contextlib.nullcontext():
        rows = Product.objects.order_by("pk").values_list("sku", flat=True).iterator(chunk_size=2)
        assert next(rows) == "C-0"
        seen = open_cursors()
        assert [*rows] == [f"C-{i}" for i in range(1, 5)]
    if behind_transaction_pooler():
        assert seen == []
    else:
        assert len(seen) == 1 and seen[0][1] is (not in_transaction)
