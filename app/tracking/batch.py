"""Change batches: the change sets of a block of writes, handed to the effects at its end.

Inside ``collecting_changes()`` writes add their change sets to the open batch; when the
block ends, each goes through the registered effects (``effects.run``), set-based, which
is what makes large pipelines fast. Outside a batch a change set is handled at once.

Each change keeps what it was made with: its change context (who, why, where) and the
effects registered then (``effects.current``); they run in those. What an effect refuses
(a level below zero at a location) is refused when the batch ends, for the whole batch: a
caller's ``try`` around one write inside it does not see it, and nothing of the batch is
written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import models, transaction
from django.utils import timezone

from ..core import oncommit
from ..core.context import ChangeContext, current_change_context, restored
from ..core.oncommit import Marker
from ..core.sqlrows import CHUNK
from . import effects
from .changes import Change, ChangeSet, RowChanges

Chosen = tuple[effects.Effect, ...]  # the effects registered when a change was made
Pending = tuple[Marker | None, ChangeContext, Chosen, list[Change] | ChangeSet]


class ChangeBatch:
    """Change sets (in write order) and extra rows of one block of writes.

    Each is kept with the savepoint level it was recorded at (an ``oncommit.Marker``
    registered there, one per level: consecutive writes at one level share it). A change
    made in a savepoint that rolls back never happened: as Django drops the ``on_commit``
    callbacks registered there, the batch drops what was recorded there, so its effects
    are not written, as they would not be without a batch (they would have been written in
    the savepoint and rolled back with it).
    """

    def __init__(self, using: str) -> None:
        self.using = using
        self.now = timezone.now()
        # (level, context, effects, item): an item is Python rows or a ChangeSet, with the
        # change context it was made in and the effects registered then (it goes through
        # those, in that context: who, why, where); None is a level outside a transaction.
        self.pending: list[Pending] = []
        self.extra: list[tuple[Marker | None, type[models.Model], list[models.Model]]] = []
        self.done: list[ChangeSet] = []
        # What ``flush_early`` wrote inside the transaction: (the level it wrote at, the
        # pending items and extra rows it wrote, the change sets it added to ``done``).
        # Should that level roll back while the items' own levels stand, the writes are
        # undone but the changes were made: the next flush runs them again.
        self.written: list[tuple[Marker, list, list, list[ChangeSet]]] = []
        self._level: Marker | None = None  # the last level made, and its savepoints
        self._level_sids: list[str] = []

    def level(self) -> Marker | None:
        """The marker of the savepoint level open now (made and registered if new)."""
        connection = transaction.get_connection(self.using)
        if not connection.in_atomic_block:
            return None
        # atomic(savepoint=False) blocks (None) roll back only with their enclosing level.
        sids = [sid for sid in connection.savepoint_ids if sid is not None]
        level = self._level
        if (
            level is None
            or level.callbacks is not connection.run_on_commit  # committed, or a rollback
            or self._level_sids != sids
        ):
            level = self._level = oncommit.mark(self.using)
            self._level_sids = sids
        return level

    def add_rows(self, rows: Sequence[Change]) -> None:
        pending = self.pending
        context, chosen = current_change_context(), effects.current()
        level = self.level()
        if pending:
            last_level, last_context, last_chosen, last = pending[-1]
            # ``is`` first: a loop of writes in one context gets the one object (a frozen
            # dataclass's ``==`` compares every field, ~10x the cost).
            if (
                last_level is level
                and last_chosen is chosen
                and isinstance(last, list)
                and (last_context is context or last_context == context)
            ):
                last.extend(rows)
                return
        pending.append((level, context, chosen, list(rows)))

    def add(self, changes: ChangeSet) -> None:
        made = (current_change_context(), effects.current())
        self.pending.append((self.level(), *made, changes))

    def add_row(self, row: models.Model) -> None:
        level, extra = self.level(), self.extra
        if extra and extra[-1][0] is level and extra[-1][1] is type(row):
            extra[-1][2].append(row)
        else:
            extra.append((level, type(row), [row]))

    def flush(self) -> None:
        """Run the effects of what stands of the batch (at its end)."""
        self._run(early=False)

    def flush_early(self) -> None:
        """``flush`` before the block ends (a delete is coming), remembering what it wrote:
        inside a savepoint the caller may roll back, which must not lose the effects of
        changes made before it."""
        self._run(early=True)

    def _run(self, *, early: bool) -> None:
        if not (self.pending or self.extra or self.written):
            return  # nothing to write (a delete of many products: once per product)
        stands = oncommit.standing(self.using)
        self._undo_rolled_back(stands)
        pending = [entry for entry in self.pending if stands(entry[0])]
        extra = [entry for entry in self.extra if stands(entry[0])]
        self.pending, self.extra = [], []
        if not (pending or extra):
            return
        by_model: dict[type[models.Model], list[models.Model]] = {}
        for _, model, rows in extra:
            by_model.setdefault(model, []).extend(rows)
        for model, rows in by_model.items():
            model._default_manager.using(self.using).bulk_create(rows, batch_size=CHUNK)
        # What stands runs as before savepoints were told apart: consecutive Python rows
        # made alike (context, effects) as one change set, whatever level each was at.
        items: list[tuple[ChangeContext, Chosen, list[Change] | ChangeSet]] = []
        for _, context, chosen, item in pending:
            last = items[-1] if items else None
            if (
                isinstance(item, list)
                and last
                and isinstance(last[2], list)
                and last[:2] == (context, chosen)
            ):
                last[2].extend(item)
            else:  # a copy: ``written`` keeps the items as recorded, to run them again
                items.append((context, chosen, list(item) if isinstance(item, list) else item))
        start = len(self.done)
        for context, chosen, item in items:
            if isinstance(item, list):
                item = RowChanges(
                    item, using=self.using, now=self.now, location_id=context.location_id
                )
            with restored(context):
                effects.run(item, chosen)
            self.done.append(item)
        if early:
            level = self.level()
            if level is not None:
                self.written.append((level, pending, extra, self.done[start:]))

    def _undo_rolled_back(self, stands: Callable[[Marker | None], bool]) -> None:
        """Put back in front of ``pending`` what ``flush_early`` wrote at a savepoint level
        since rolled back (the writes went with it), unless it was made at a level that
        rolled back too; forget what was written for good (committed)."""
        if not self.written:
            return
        pending: list = []
        extra: list = []
        kept = []
        for level, items, rows, done in self.written:
            if stands(level):
                if not level.committed:
                    kept.append((level, items, rows, done))
                continue
            pending.extend(items)
            extra.extend(rows)
            undone = {id(item) for item in done}
            self.done = [item for item in self.done if id(item) not in undone]
            for *_, item in items:
                if isinstance(item, ChangeSet):
                    item.__dict__.pop("_notes", None)  # notes of effects rolled back
        self.written = kept
        self.pending = pending + self.pending
        self.extra = extra + self.extra


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


@contextmanager
def running_at_end(using: str = "default") -> Iterator[list[ChangeSet]]:
    """``collecting_changes`` whose effects run when the block ends even inside an outer
    batch; yields the list of the block's change sets, filled then.

    For writes whose change sets read what the next block overwrites (an upsert chunk's
    from its stage): in an outer batch they would run after it. What the outer batch
    collected before the block runs first, as before a delete (``flush_open``), so the
    effects keep the writes' order and the list holds the block's change sets alone.
    """
    outer = _batch.get()
    done: list[ChangeSet] = []
    if outer is None:
        with collecting_changes(using) as batch:
            yield done
        done.extend(batch.done)
        return
    outer.flush_early()
    before = {id(changes) for changes in outer.done}
    yield done
    outer.flush_early()
    done.extend(changes for changes in outer.done if id(changes) not in before)


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
        batch.add_row(row)
