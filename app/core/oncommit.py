"""One per-transaction accumulator: collect work during a transaction, act once at commit.

The webhook outbox (streams to enqueue) and the response cache (keys to tombstone) both
gather many small items per transaction and want one ``on_commit`` callback for all of
them, not one per item. ``pending(using, Kind)`` returns the ``Kind`` accumulator of the
current transaction on ``using``, registering its callback when the transaction has none
yet. Outside a transaction it returns ``None``: the caller acts at once.

How "still registered" is known: Django replaces ``connection.run_on_commit`` with a new
list at commit and at every rollback (of a savepoint too). While the list an accumulator
was registered into is still the connection's, the callback is still pending; after a
savepoint rollback it is pending if it is still in the new list. Any rollback that drops
it also undoes every write made since it was registered, so later writes may add to it.
"""

from __future__ import annotations

from typing import Any, TypeVar

from django.db import transaction

A = TypeVar("A", bound="Accumulator")


class Accumulator:
    """Base class: subclasses collect items and act on them in ``flush`` (after commit)."""

    robust = True  # an error in flush is logged by Django, not raised into the committer

    def __init__(self, connection: Any) -> None:
        self.connection = connection
        self.callback = self._run  # the very object registered, to find it again
        self.callbacks = connection.run_on_commit

    def flush(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        self.flush()

    def is_registered(self) -> bool:
        connection = self.connection
        if self.callbacks is connection.run_on_commit:
            return True
        if not connection.in_atomic_block:
            return False
        if any(entry[1] is self.callback for entry in connection.run_on_commit):
            self.callbacks = connection.run_on_commit
            return True
        return False


def current(using: str, kind: type[A]) -> A | None:
    """The ``kind`` accumulator of the open transaction on ``using``, if it has one."""
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        return None
    found = getattr(connection, "_stockpipe_accumulators", {}).get(kind)
    if found is not None and found.is_registered():
        return found
    return None


def pending(using: str, kind: type[A]) -> A | None:
    """The ``kind`` accumulator of the open transaction on ``using``, made and registered
    with ``on_commit`` if needed; ``None`` outside a transaction (act now instead)."""
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        return None
    found = current(using, kind)
    if found is None:
        found = kind(connection)
        registry = connection.__dict__.setdefault("_stockpipe_accumulators", {})
        registry[kind] = found
        transaction.on_commit(found.callback, using=using, robust=kind.robust)
        found.callbacks = connection.run_on_commit
    return found
