"""Which database a read-only request reads: the read replica (``DATABASE_REPLICA_URL``) or
the primary. ``app.core.dbrouter.ReplicaRouter`` applies the decision to each query.

* ``replica_reads(request)``, called first by the views whose reads may go to the replica
  (GET/HEAD of the back-office pages and of the API's lists), decides for the request.
  Authentication happens before it, on the primary (a revoked token is refused at once,
  whatever the replica's lag).
* Read-your-writes: a request that wrote (``remember_write``, called by
  ``ReplicaRoutingMiddleware``) leaves an entry for its client (its API token, else its
  session) in the shared cache, so it works across processes and machines. The client then
  reads the primary for ``STOCKPIPE_REPLICA_READ_YOUR_WRITES`` seconds, and after that
  until the replica has replayed the write: the entry holds the primary's WAL position
  after the write, compared with the replica's replay position. Replica lag therefore never
  shows a client a state older than its own write.
* Fallback: a replica that cannot be connected to (down, unreachable within
  ``connect_timeout``) is not tried again by this process for ``STOCKPIPE_REPLICA_RETRY``
  seconds; meanwhile reads go to the primary. One warning is logged per failed try, not per
  query. A read-only request whose replica read failed midway is served again from the
  primary (``failed_in_request``, ``ReplicaRoutingMiddleware``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.http import HttpRequest

from .. import conf
from ..core import cache_merge, dbrouter
from ..core.dbrouter import REPLICA

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD"})
KEY_PREFIX = "replica:wrote:v1:"
# How long a client's write position is remembered: far longer than the window, so a
# replica that lags (or whose replay is paused) for that long still serves no client a
# state older than its own write.
REMEMBER_FOR = 24 * 3600
# "Compare with the primary's position at read time" (the write's was not available).
UNKNOWN = -1


def configured() -> bool:
    return REPLICA in settings.DATABASES


def replica_reads(request: HttpRequest) -> None:
    """Let the rest of this request's reads (the view's and its response's rendering) use
    the replica: called first by the read-only views, after authentication (which reads
    the primary). Only for GET/HEAD, and not for a client whose own recent write the
    replica may not have replayed yet."""
    state = dbrouter.current.get()
    if state is not None and request.method in SAFE_METHODS and not state.pinned:
        state.replica = _may_read_replica(request)


def client_key(request: HttpRequest) -> str | None:
    """The cache key of the request's client: its bearer token (which alone authenticates
    the request, when present), else its session; ``None`` for neither."""
    scheme, _, raw = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        identity = "token:" + raw.strip()
    else:
        session = getattr(request, "session", None)
        session_key = session.session_key if session is not None else None
        if not session_key:
            return None
        identity = "session:" + session_key
    return KEY_PREFIX + hashlib.sha256(identity.encode()).hexdigest()


def remember_write(request: HttpRequest) -> None:
    """Record that the request's client wrote: when, and up to which WAL position."""
    if not configured():
        return
    key = client_key(request)
    if key is None:
        return
    try:
        _remember(key, {"at": time.time(), "lsn": _primary_position()})
    except Exception:  # the cache is down: reads then go to the primary (see below)
        logger.warning("Could not record a write for read-your-writes", exc_info=True)


def _remember(key: str, wrote: dict) -> None:
    """Merge ``wrote`` into the client's entry, never moving it back: two requests of one
    client may finish in either order, and the entry must keep the later write's time and
    WAL position, whichever is stored last (``cache_merge``: atomic on the shared cache)."""

    def later(entry: dict | None) -> dict:
        if entry is None:
            return wrote
        return {"at": max(entry["at"], wrote["at"]), "lsn": _furthest(entry["lsn"], wrote["lsn"])}

    cache_merge.merge(cache, key, later, REMEMBER_FOR)


def _furthest(a: int | None, b: int | None) -> int | None:
    """The further of two recorded positions. ``UNKNOWN`` (compare with the primary's
    position at read time) is at least as far as any; ``None`` (no WAL) is none."""
    if UNKNOWN in (a, b):
        return UNKNOWN
    if a is None or b is None:
        return b if a is None else a
    return max(a, b)


def _may_read_replica(request: HttpRequest) -> bool:
    if not configured() or connections[DEFAULT_DB_ALIAS].in_atomic_block:
        return False
    key = client_key(request)
    try:
        wrote = cache.get(key) if key is not None else None
    except Exception:  # without the entry, only the primary is sure to hold the writes
        logger.warning("Could not read the read-your-writes entry", exc_info=True)
        return False
    if wrote is not None and time.time() - wrote["at"] < conf.replica_read_your_writes():
        return False
    if not health.usable():
        return False
    return wrote is None or _replayed(wrote["lsn"])


def failed_in_request() -> bool:
    """Whether a read on the replica failed during this request (then it is served again
    from the primary). A replica whose connection broke is not tried again for a while."""
    if not configured():
        return False
    connection = connections[REPLICA]
    if not connection.errors_occurred:
        return False
    if connection.connection is None or not connection.is_usable():
        health.failed()
    else:  # e.g. a query cancelled by a conflict with recovery on the standby
        logger.warning("A read on the replica failed; serving the request from the primary")
    return True


def _primary_position() -> int | None:
    """The primary's WAL position now (after the request's commits); ``None`` on a database
    without one (SQLite: its "replica" can only be a test mirror)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.vendor != "postgresql":
        return None
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT (pg_current_wal_lsn() - '0/0')::bigint")
            return int(cursor.fetchone()[0])
    except DatabaseError:
        logger.warning("Could not read the primary's WAL position", exc_info=True)
        return UNKNOWN


class _ReplayedUpTo:
    """The highest replay position this process saw on the replica; replay only moves
    forward, so an older reading is a safe lower bound and saves a query."""

    position = 0


def _replayed(position: int | None) -> bool:
    """Whether the replica has replayed the primary's WAL up to ``position``."""
    if position is None or 0 <= position <= _ReplayedUpTo.position:
        return True
    try:
        if position == UNKNOWN:
            position = _primary_position()
            if position in (None, UNKNOWN):
                return False
        with connections[REPLICA].cursor() as cursor:
            cursor.execute("SELECT pg_is_in_recovery(), (pg_last_wal_replay_lsn() - '0/0')::bigint")
            in_recovery, replayed = cursor.fetchone()
    except DatabaseError:
        health.failed()
        return False
    if not in_recovery:
        return True  # not a standby (a test mirror of the primary): nothing to replay
    _ReplayedUpTo.position = max(_ReplayedUpTo.position, int(replayed or 0))
    return position <= _ReplayedUpTo.position


class ReplicaHealth:
    """Whether this process may use the replica now; connects (or health-checks a kept
    connection) at most once per request that would read it."""

    def __init__(self) -> None:
        self.down_until = 0.0
        self.down = False

    def usable(self) -> bool:
        if time.monotonic() < self.down_until:
            return False
        connection = connections[REPLICA]
        try:
            connection.close_if_health_check_failed()
            connection.ensure_connection()
        except DatabaseError as exc:
            self.failed(exc)
            return False
        if self.down:
            self.down = False
            logger.info("Read replica reachable again; reads of pages and lists use it")
        return True

    def failed(self, exc: BaseException | None = None) -> None:
        retry = conf.replica_retry()
        self.down = True
        self.down_until = time.monotonic() + retry
        with contextlib.suppress(DatabaseError):
            connections[REPLICA].close()
        # One line: psycopg's messages span several.
        reason = (" ".join(str(exc).split()) or type(exc).__name__) if exc else "query failed"
        logger.warning(
            "Read replica unavailable (%s); reading from the primary, next try in %.0f s",
            reason,
            retry,
        )


health = ReplicaHealth()
