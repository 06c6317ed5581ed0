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

from collections.abc import Callable
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


class Marker(Accumulator):
    """Registered while some savepoints are open, it tells later whether what was done
    then still stands: its transaction committed (it ran) or it is still pending, rather
    than rolled back with one of those savepoints (Django dropped it unrun)."""

    robust = False

    def __init__(self, connection: Any) -> None:
        super().__init__(connection)
        self.committed = False

    def flush(self) -> None:
        self.committed = True


def mark(using: str) -> Marker | None:
    """A new ``Marker`` registered with ``on_commit`` now; ``None`` outside a transaction
    (nothing done now can be rolled back)."""
    connection = transaction.get_connection(using)
    if not connection.in_atomic_block:
        return None
    marker = Marker(connection)
    transaction.on_commit(marker.callback, using=using, robust=Marker.robust)
    marker.callbacks = connection.run_on_commit
    return marker


def standing(using: str) -> Callable[[Marker | None], bool]:
    """A test of markers at this moment: does what was done when each was made still stand?
    Reads ``run_on_commit`` at most once, however many markers are tested (not once per
    marker, as ``is_registered`` would after a rollback)."""
    connection = transaction.get_connection(using)
    callbacks = connection.run_on_commit
    found: set[int] | None = None

    def stands(marker: Marker | None) -> bool:
        nonlocal found
        if marker is None or marker.committed or marker.callbacks is callbacks:
            return True
        if not connection.in_atomic_block:
            return False
        if found is None:
            found = {id(entry[1]) for entry in callbacks}
        if id(marker.callback) in found:
            marker.callbacks = callbacks
            return True
        return False

    return stands
