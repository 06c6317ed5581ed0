"""Change batches: the change sets of a block of writes, handed to the effects at its end.

Inside ``collecting_changes()`` writes add their change sets to the open batch; when the
block ends, each goes through the registered effects (``effects.run``), set-based, which
is what makes large pipelines fast. Outside a batch a change set is handled at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import models, transaction
from django.utils import timezone

from ..core.context import current_change_context
from ..core.sqlrows import CHUNK
from . import effects
from .changes import Change, ChangeSet, RowChanges


class ChangeBatch:
    """Change sets (in write order) and extra rows of one block of writes."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.now = timezone.now()
        # Python rows are kept per location (of the change context they were made in).
        self.pending: list[tuple[int | None, list[Change]] | ChangeSet] = []
        self.done: list[ChangeSet] = []
        self.extra_rows: dict[type[models.Model], list[models.Model]] = {}
        # What ``flush_early`` ran inside the transaction: (marker, the pending items and
        # extra rows it wrote, the change sets it added to ``done``). The marker is
        # registered with ``on_commit``: a commit runs it (the entry is dropped, written
        # for good); a rollback (to a savepoint) that undid those writes drops it unrun,
        # and the next flush runs them again.
        self.early: list[tuple[Callable[[], None], list, dict, list[ChangeSet]]] = []

    def add_rows(self, rows: Sequence[Change]) -> None:
        pending = self.pending
        location = current_change_context().location_id
        if pending and isinstance(pending[-1], tuple) and pending[-1][0] == location:
            pending[-1][1].extend(rows)
        else:
            pending.append((location, list(rows)))

    def add(self, changes: ChangeSet) -> None:
        self.pending.append(changes)

    def flush(self) -> None:
        self._undone_again()
        for model, rows in self.extra_rows.items():
            model._default_manager.using(self.using).bulk_create(rows, batch_size=CHUNK)
        self.extra_rows = {}
        pending, self.pending = self.pending, []
        for item in pending:
            if isinstance(item, tuple):
                location, rows = item
                item = RowChanges(rows, using=self.using, now=self.now, location_id=location)
            effects.run(item)
            self.done.append(item)

    def flush_early(self) -> None:
        """``flush`` before the block ends (a delete is coming), remembering what it wrote:
        inside a savepoint the caller may roll back, which must not lose the effects of
        changes made before it."""
        self._undone_again()  # what an earlier savepoint rolled back: remembered again
        if not self.pending and not self.extra_rows:
            return  # nothing to write (a delete of many products: once per product)
        connection = transaction.get_connection(self.using)
        if not connection.in_atomic_block:
            self.flush()
            return
        pending, extra = list(self.pending), {m: list(r) for m, r in self.extra_rows.items()}
        start = len(self.done)
        self.flush()

        def marker() -> None:
            self.early = [entry for entry in self.early if entry[0] is not marker]

        transaction.on_commit(marker, using=self.using)  # run at commit: kept for good
        self.early.append((marker, pending, extra, self.done[start:]))

    def _undone_again(self) -> None:
        """Put back in front of ``pending`` what ``flush_early`` wrote in a savepoint that
        has since been rolled back (its marker is no longer registered)."""
        if not self.early:
            return
        registered = {
            id(entry[1]) for entry in transaction.get_connection(self.using).run_on_commit
        }
        again: list = []
        extra: dict[type[models.Model], list[models.Model]] = {}
        kept = []
        for marker, pending, rows, done in self.early:
            if id(marker) in registered:
                kept.append((marker, pending, rows, done))
                continue
            again.extend(pending)
            for model, objs in rows.items():
                extra.setdefault(model, []).extend(objs)
            undone = {id(item) for item in done}
            self.done = [item for item in self.done if id(item) not in undone]
            for item in pending:
                if isinstance(item, ChangeSet):
                    item.__dict__.pop("_notes", None)  # notes of effects rolled back
        self.early = kept
        if again:
            self.pending = again + self.pending
            for model, objs in self.extra_rows.items():
                extra.setdefault(model, []).extend(objs)
            self.extra_rows = extra


_batch: ContextVar[ChangeBatch | None] = ContextVar("stockpipe_change_batch", default=None)


@contextmanager
def collecting_changes(using: str = "default") -> Iterator[ChangeBatch]:
    """Collect the change sets of the block and run the effects on them at its end.

    Nested blocks share the outermost batch. Must run inside a transaction: the effects
    write when the block exits, before the transaction commits.
    """
    outer = _batch.get()
    if outer is not None:
        yield outer
        return
    batch = ChangeBatch(using=using)
    token = _batch.set(batch)
    try:
        yield batch
    finally:
        _batch.reset(token)
    batch.flush()


def flush_open() -> None:
    """Run the effects of what the open batch has collected so far, if a batch is open.

    Called before a delete: without a batch a change's history, ledger, level and alert
    rows exist before a later delete of the product, which nulls or removes them; in a
    batch they must too, or they would be written for a row already gone.
    """
    batch = _batch.get()
    if batch is not None:
        batch.flush_early()


def record(rows: Sequence[Change], *, using: str) -> None:
    """Hand Python change rows to the effects: into the open batch, else at once."""
    if not rows:
        return
    batch = _batch.get()
    if batch is None:
        effects.run(RowChanges(list(rows), using=using))
    else:
        batch.add_rows(rows)


def record_set(changes: ChangeSet) -> None:
    """``record`` for a change set the write built itself (the SQL route's)."""
    batch = _batch.get()
    if batch is None:
        effects.run(changes)
    else:
        batch.add(changes)


def add_row(row: models.Model, *, using: str = "default") -> None:
    """Write ``row`` with the current change: buffered in an open batch, else saved now.

    For code that keeps its own records of a change (an outbox, say) and wants them
    written set-based, in the same transaction.
    """
    batch = _batch.get()
    if batch is None:
        row.save(using=using)
    else:
        batch.extra_rows.setdefault(type(row), []).append(row)
