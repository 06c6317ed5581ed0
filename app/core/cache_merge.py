"""Read-modify-write of one cache entry that no concurrent writer's update can undo.

The shared cache of a deployment (``stockpipe.cache.RedisCache``) merges atomically for
every process and machine (``merge``: the key WATCHed while read, the write retried when
another client changed it). Other backends get the same call under a lock of this
process: atomic for the local-memory cache of development and tests, which no other
process shares; not across processes (a database or memcached cache).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_LOCK = threading.Lock()


def merge(cache, key: str, function: Callable[[Any], Any], timeout: float | None) -> Any:
    """Store ``function(current value, or None)`` at ``key``; returns the stored value."""
    atomic = getattr(cache, "merge", None)
    if atomic is not None:
        return atomic(key, function, timeout)
    with _LOCK:
        value = function(cache.get(key))
        cache.set(key, value, timeout)
        return value
