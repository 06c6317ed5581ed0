"""Read-through caching in the shared cache that a committed write reliably invalidates.

Used by the API's hot read paths (product detail, bearer tokens). The hazard of a plain
read-through cache is a reader that misses, reads the database, and only then stores what
it read: if a write commits and deletes the key between the reader's database read and its
store, the pre-write value is cached for the whole timeout. So:

* Invalidation does not delete: it writes a short-lived *tombstone* (``TOMBSTONE_TTL``).
* Readers fill with ``add`` (store only if the key is absent), never over a tombstone, and
  only if less than ``MAX_FILL_DELAY`` (half the tombstone's lifetime) passed since they
  looked the key up. A write that committed after the reader's database read wrote its
  tombstone after that lookup, so the tombstone is still there and the stale ``add`` fails.
* Invalidation runs after the transaction commits (``on_commit``): before commit, other
  processes still read the old committed row, so the old entry stays right for them. Inside
  the writing transaction its invalidated keys are bypassed (read-your-writes), and the
  first ``EAGER_KEYS`` keys of a transaction are tombstoned at once as well, so a small
  write leaves no entry behind even if the process dies between commit and ``on_commit``.
  Large (bulk) writes are tombstoned in chunks at commit: one round trip per ``CHUNK`` keys.
* A key whose eager tombstone was written less than ``MAX_FILL_DELAY`` before the commit
  is not tombstoned again at commit: that tombstone outlives the commit by more than
  ``MAX_FILL_DELAY``, so a reader that looked up before it cannot fill after it (its
  ``add`` fails or the tombstone overwrites it), one that looked up while it lived does
  not fill, and one that looks up after it expired reads the committed row. A short write
  (an API request) costs one round trip, not two; a longer transaction still gets both.

With ``stockpipe.cache.RedisCache``, a hit may come from the process's near cache instead of
a round trip: Redis pushes an invalidation to every process that read a key as soon as the
key changes (the tombstone write included), and each read drains those pushes first, so a
committed write is seen as it would be with a round trip; see ``stockpipe.cache``.

Caching is on when the cache is shared between processes (Redis, Memcached) or when
``STOCKPIPE_API_CACHE`` says so; a per-process cache (development's LocMemCache) would
miss invalidations made by other processes, so it is never used for this.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import DEFAULT_CACHE_ALIAS, cache
from django.core.cache.backends.memcached import BaseMemcachedCache
from django.core.cache.backends.redis import RedisCache
from django.db import DEFAULT_DB_ALIAS
from django.utils.module_loading import import_string

from .. import conf
from ..core import oncommit

logger = logging.getLogger(__name__)

TOMBSTONE = "\x00invalidated"
TOMBSTONE_TTL = 10
MAX_FILL_DELAY = TOMBSTONE_TTL / 2
EAGER_KEYS = 100
CHUNK = 1000
SHARED_BACKENDS = (RedisCache, BaseMemcachedCache)


def enabled() -> bool:
    """Whether to cache: ``STOCKPIPE_API_CACHE`` if set, else only with a shared backend."""
    setting = conf.api_cache()
    if setting is not None:
        return bool(setting)
    return _is_shared(settings.CACHES[DEFAULT_CACHE_ALIAS]["BACKEND"])


@functools.cache
def _is_shared(backend: str) -> bool:
    """Redis and Memcached (and subclasses) are shared and have an atomic ``add``."""
    return issubclass(import_string(backend), SHARED_BACKENDS)


class Ticket:
    """Permission to fill one key after a miss, valid for ``MAX_FILL_DELAY`` seconds."""

    __slots__ = ("key", "started")

    def __init__(self, key: str, started: float) -> None:
        self.key = key
        self.started = started


Entry = tuple[Any, "Ticket | None"]


def get(key: str, using: str = DEFAULT_DB_ALIAS) -> Entry:
    """``(value, None)`` on a hit; ``(None, ticket)`` on a miss that may be filled;
    ``(None, None)`` when the caller must read the database and not fill (a fresh
    invalidation, or a key this connection's open transaction has invalidated)."""
    return get_many([key], using=using)[key]


def get_many(keys: list[str], using: str = DEFAULT_DB_ALIAS) -> dict[str, Entry]:
    """``get`` for several keys in one round trip."""
    batch = oncommit.current(using, _Batch)
    pending = batch.keys if batch is not None else set()
    started = time.monotonic()
    found = cache.get_many(keys) if len(keys) > 1 else {keys[0]: cache.get(keys[0])}
    entries: dict[str, Entry] = {}
    for key in keys:
        value = found.get(key)
        if key in pending or value == TOMBSTONE:
            entries[key] = (None, None)
        elif value is None:
            entries[key] = (None, Ticket(key, started))
        else:
            entries[key] = (value, None)
    return entries


def fill(ticket: Ticket | None, value: Any, timeout: float) -> None:
    """Store what the reader read, unless the key was invalidated since its lookup."""
    if ticket is None or timeout < 1:
        return
    if time.monotonic() - ticket.started > MAX_FILL_DELAY:
        return
    cache.add(ticket.key, value, timeout=int(timeout))


def tombstone(keys: Iterable[str]) -> None:
    """Invalidate ``keys`` now, in chunks of ``CHUNK`` keys per round trip."""
    keys = list(keys)
    if len(keys) == 1:  # the common case (one product): one SET, not a MULTI/MSET/EXPIRE
        cache.set(keys[0], TOMBSTONE, TOMBSTONE_TTL)
        return
    for start in range(0, len(keys), CHUNK):
        cache.set_many(dict.fromkeys(keys[start : start + CHUNK], TOMBSTONE), TOMBSTONE_TTL)


class _Batch(oncommit.Accumulator):
    """Keys invalidated in one transaction, tombstoned when it commits."""

    def __init__(self, connection) -> None:
        super().__init__(connection)
        self.keys: set[str] = set()
        # When the eager tombstones were sent (before sending), by key: only written ones.
        self.tombstoned: dict[str, float] = {}

    def flush(self) -> None:
        now = time.monotonic()
        tombstoned = self.tombstoned
        keys = [
            key
            for key in self.keys
            if key not in tombstoned or now - tombstoned[key] >= MAX_FILL_DELAY
        ]
        if keys:
            _tombstone_logged(keys)


def _tombstone_logged(keys: Iterable[str]) -> bool:
    """``tombstone``, logging a cache outage instead of raising it: the write being saved
    must commit (and a committed one must not look failed) while the cache is down; what it
    could not invalidate is then stale for at most the entry's own timeout. Whether the
    tombstones were written."""
    keys = list(keys)
    try:
        tombstone(keys)
    except Exception:
        logger.warning("could not invalidate %d cache keys", len(keys), exc_info=True)
        return False
    return True


def invalidate(keys: Iterable[str], using: str = DEFAULT_DB_ALIAS) -> None:
    """Invalidate ``keys`` once the current transaction on ``using`` commits (now, outside
    a transaction). Cheap per call, so per-object receivers of bulk writes can use it. Never
    raises for the cache: an outage is logged (``_tombstone_logged``)."""
    if not enabled():
        return
    batch = oncommit.pending(using, _Batch)
    if batch is None:
        _tombstone_logged(keys)
        return
    eager = []
    seen = batch.keys
    for key in keys:
        if key not in seen:
            seen.add(key)
            if len(seen) <= EAGER_KEYS:
                eager.append(key)
    if eager:
        sent = time.monotonic()
        if _tombstone_logged(eager):
            batch.tombstoned.update(dict.fromkeys(eager, sent))
