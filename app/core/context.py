"""Who or what is making the current change, carried in a context variable.

A context variable (not a global or thread-local) follows the code into threads started
with ``contextvars.copy_context`` and keeps concurrent async requests apart.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class ChangeContext:
    user_id: int | None = None
    source: str = "shell"
    reason: str = ""
    idempotency_key: str | None = None
    # The location a stock change applies to (a ``Location`` id); None: the default one.
    location_id: int | None = None


_current: ContextVar[ChangeContext] = ContextVar(
    "stockpipe_change_context", default=ChangeContext()
)


def current_change_context() -> ChangeContext:
    return _current.get()


@contextmanager
def change_context(
    *,
    user=None,
    source: str | None = None,
    reason: str | None = None,
    idempotency_key: str | None = None,
    location_id: int | None = None,
) -> Iterator[ChangeContext]:
    """Attribute every change made inside the block (history, ledger, audit rows).

    Unset arguments are inherited from the enclosing context, so a pipeline run inside an
    API request keeps the request's user but gets its own source.
    """
    outer = _current.get()
    changes: dict = {}
    if user is not None:
        changes["user_id"] = user.pk if getattr(user, "is_authenticated", False) else None
    if source is not None:
        changes["source"] = source
    if reason is not None:
        changes["reason"] = reason
    if idempotency_key is not None:
        changes["idempotency_key"] = idempotency_key
    if location_id is not None:
        changes["location_id"] = location_id
    token = _current.set(replace(outer, **changes))
    try:
        yield _current.get()
    finally:
        _current.reset(token)


@contextmanager
def restored(context: ChangeContext) -> Iterator[ChangeContext]:
    """Make ``context`` current for the block: for work deferred from where it was made (a
    change batch runs its effects when it ends, in each change's own context)."""
    token = _current.set(context)
    try:
        yield context
    finally:
        _current.reset(token)
