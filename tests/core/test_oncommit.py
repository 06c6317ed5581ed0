"""The per-transaction accumulator (``app.core.oncommit``): one on_commit callback per
transaction, however many items; rolled-back work is never acted on."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from app.core import oncommit

pytestmark = pytest.mark.django_db


class Items(oncommit.Accumulator):
    flushed: list[list[str]] = []

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self.items: list[str] = []

    def flush(self) -> None:
        Items.flushed.append(self.items)


def add(item: str) -> None:
    oncommit.pending("default", Items).items.append(item)


class Rollback(Exception):
    pass


def test_one_callback_per_transaction(django_capture_on_commit_callbacks):
    Items.flushed = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        for i in range(50):
            add(f"i{i}")
        with transaction.atomic():  # a savepoint that commits keeps the one callback
            add("nested")
    assert len(callbacks) == 1
    assert Items.flushed == [[*(f"i{i}" for i in range(50)), "nested"]]


def test_a_rolled_back_savepoint_drops_its_items_and_later_ones_still_flush(
    django_capture_on_commit_callbacks,
):
    Items.flushed = []
    with django_capture_on_commit_callbacks(execute=True) as callbacks, transaction.atomic():
        try:
            with transaction.atomic():
                add("rolled back")
                raise Rollback
        except Rollback:
            pass
        assert oncommit.current("default", Items) is None
        add("kept")
        add("kept too")
    assert len(callbacks) == 1
    assert Items.flushed == [["kept", "kept too"]]


def test_an_accumulator_registered_before_a_rolled_back_savepoint_survives_it(
    django_capture_on_commit_callbacks,
):
    Items.flushed = []
    with django_capture_on_commit_callbacks(execute=True), transaction.atomic():
        add("before")
        try:
            with transaction.atomic():
                add("inside")  # the rollback undoes the write, not the accumulator
                raise Rollback
        except Rollback:
            pass
        assert oncommit.current("default", Items) is not None
        add("after")
    # An item added inside a rolled-back savepoint joins the surviving accumulator: callers
    # add keys/streams that stay correct to act on (a tombstone, a stream to look at).
    assert Items.flushed == [["before", "inside", "after"]]


@pytest.mark.django_db(transaction=True)
def test_real_commit_flushes_once_and_autocommit_has_no_accumulator():
    Items.flushed = []
    assert not connection.in_atomic_block
    assert oncommit.pending("default", Items) is None  # the caller acts at once
    with transaction.atomic():
        add("a")
        add("b")
    assert Items.flushed == [["a", "b"]]
    try:
        with transaction.atomic():
            add("never")
            raise Rollback
    except Rollback:
        pass
    assert Items.flushed == [["a", "b"]]
