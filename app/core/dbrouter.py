"""The database router: reads the current request may take from the read replica go there,
everything else goes to the primary (``default``).

A request is routed to the replica only where ``app.selectors.replica.replica_reads`` (on
the read-only views: pages and API lists) says so for that request; anything outside a
request (tasks and workers, management commands, migrations, the shell), the admin, writes,
``select_for_update`` and every read inside an atomic block read the primary. The first write
of a request pins the rest of it to the primary (it reads its own write) and marks the
request as one that wrote, so its client keeps reading the primary for a while
(``ReplicaRoutingMiddleware``); bookkeeping writes (a token's last use, the session row) are
not the client's data and do neither.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from django.db import DEFAULT_DB_ALIAS, connections

REPLICA = "replica"

# Writes that are not the client's own data: they do not send the client to the primary.
BOOKKEEPING = frozenset({("app", "apitoken"), ("sessions", "session")})


@dataclass
class Routing:
    """Routing state of one request (``current``)."""

    replica: bool = False  # reads may use the replica (set by ``replica_reads``)
    pinned: bool = False  # the request wrote (or locked): the primary for the rest of it
    wrote: bool = False  # ... so its client reads the primary for a while


current: ContextVar[Routing | None] = ContextVar("stockpipe_db_routing", default=None)


@contextmanager
def primary_reads() -> Iterator[None]:
    """Reads inside go to the primary, whatever the request allows (for what is cached)."""
    token = current.set(None)
    try:
        yield
    finally:
        current.reset(token)


class ReplicaRouter:
    def db_for_read(self, model, **hints) -> str:
        state = current.get()
        if state is None or not state.replica or state.pinned:
            return DEFAULT_DB_ALIAS
        if connections[DEFAULT_DB_ALIAS].in_atomic_block:
            return DEFAULT_DB_ALIAS  # a transaction reads its own uncommitted writes
        instance = hints.get("instance")
        if instance is not None and instance._state.db == DEFAULT_DB_ALIAS:
            return DEFAULT_DB_ALIAS  # related rows of a row read from the primary
        return REPLICA

    def db_for_write(self, model, **hints) -> str:
        # Also asked for select_for_update(), get_or_create() and the like: all primary.
        state = current.get()
        if state is not None and (model._meta.app_label, model._meta.model_name) not in BOOKKEEPING:
            state.pinned = state.wrote = True
        return DEFAULT_DB_ALIAS

    def allow_relation(self, obj1, obj2, **hints) -> bool | None:
        if {obj1._state.db, obj2._state.db} <= {DEFAULT_DB_ALIAS, REPLICA}:
            return True  # the replica holds the primary's rows
        return None

    def allow_migrate(self, db: str, app_label: str, model_name=None, **hints) -> bool | None:
        return False if db == REPLICA else None  # the replica gets its schema by streaming
