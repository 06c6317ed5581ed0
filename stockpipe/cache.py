"""Django's Redis cache backend, with a near cache that Redis keeps coherent.

Reads (``get``/``get_many``, the per-request reads of the API: a token's identity and a
product's rendered body) are served from memory when this thread has read the key before
and Redis has not reported a change since. The reporting is Redis's own server-assisted
client-side caching (``CLIENT TRACKING``, Redis 6+): a dedicated RESP3 connection reads the
keys, Redis remembers which keys it read and pushes an ``invalidate`` message on that
connection as soon as any client changes, expires, evicts or flushes one of them. Before
serving from memory, pending pushes are drained, so a write that another process has
completed is seen by the next read here once its push has arrived: Redis queues the push
while it runs the write and sends it in the same pass of its event loop as the writer's
reply, one socket after the other, so a read that starts in between (microseconds) is
still served the old value. A write made through this cache object drops its keys at
once. A broken tracking connection empties the near cache (messages may be lost) and the
read falls back to an ordinary round trip. Entries also keep the key's TTL, read in the
same round trip, so nothing outlives its timeout even before Redis's lazy expiry.

redis-py has this built in (``cache_config``) but refuses servers older than 7.4, and
CLIENT TRACKING itself only needs 6.0; Debian's Redis here is 7.0.

Django's ``RedisCacheClient.get_client`` also builds a new ``redis.Redis`` for every other
cache operation, which with redis-py 5+ rebuilds a table of about 170 response callbacks
each time; a client only wraps its pool and is thread-safe, so one per pool is reused.

``merge(key, function)`` is an atomic read-modify-write of one key for every client of the
server (WATCH/MULTI/EXEC, retried when another client wrote the key in between).

Option ``NEAR_CACHE_ENTRIES`` (in ``OPTIONS``; default 10,000 per thread, 0 disables)
bounds the memory: the oldest entries are dropped first.
"""

from __future__ import annotations

import os
import time

from django.core.cache.backends import redis
from django.core.cache.backends.base import DEFAULT_TIMEOUT
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.exceptions import WatchError

NEVER = float("inf")
_BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


class NearCache:
    """Raw values of keys read through one tracked connection, dropped when Redis says so.

    Not thread-safe: Django gives every thread its own cache object, hence its own
    ``NearCache`` and tracking connection.
    """

    def __init__(self, pool, max_entries: int) -> None:
        self._pool = pool
        self._max_entries = max_entries
        self._values: dict[bytes, tuple[bytes, float]] = {}
        self._connection = None
        self._pid = 0

    def get_many(self, keys: list[str]) -> dict[str, bytes] | None:
        """Raw values of the ``keys`` that exist; ``None`` if Redis could not be asked."""
        try:
            connection = self._tracked_connection()
            while connection.can_read(0):  # invalidations pushed since the last read
                connection.read_response(push_request=True)
            found: dict[str, bytes] = {}
            missing: list[str] = []
            now = time.monotonic()
            for key in keys:
                entry = self._values.get(key.encode())
                if entry is not None and entry[1] > now:
                    found[key] = entry[0]
                else:
                    missing.append(key)
            if missing:
                self._fetch(connection, missing, found)
            return found
        except _BROKEN:
            self.reset()
            return None

    def _fetch(self, connection, keys: list[str], found: dict[str, bytes]) -> None:
        # One round trip: the values, and each key's TTL so the entry expires with it.
        commands = [("MGET", *keys), *(("PTTL", key) for key in keys)]
        connection.send_packed_command(connection.pack_commands(commands))
        values = connection.read_response()
        ttls = [connection.read_response() for _ in keys]
        now = time.monotonic()
        for key, value, ttl in zip(keys, values, ttls, strict=True):
            if value is None or ttl == -2:
                continue
            found[key] = value
            self._remember(key.encode(), value, now + ttl / 1000 if ttl >= 0 else NEVER)

    def _remember(self, key: bytes, value: bytes, expires: float) -> None:
        values = self._values
        values.pop(key, None)
        if len(values) >= self._max_entries:
            del values[next(iter(values))]  # the oldest
        values[key] = (value, expires)

    def discard(self, keys) -> None:
        """Forget ``keys`` (written through this cache object) without waiting for Redis."""
        for key in keys:
            self._values.pop(key.encode() if isinstance(key, str) else key, None)

    def clear(self) -> None:
        self._values.clear()

    def reset(self) -> None:
        """Drop everything and the connection: invalidations may have been missed."""
        self._values.clear()
        if self._connection is not None:
            self._connection.disconnect()
            self._connection = None

    def _invalidated(self, message) -> None:
        keys = message[1]
        if keys is None:  # FLUSHDB/FLUSHALL, or the server dropped its tracking table
            self._values.clear()
        else:
            for key in keys:
                self._values.pop(key, None)

    def _tracked_connection(self):
        if self._connection is not None and self._pid == os.getpid():
            return self._connection
        # New, or inherited across fork(): the parent's socket is not ours to read.
        self._values.clear()
        self._connection = None
        connection = self._pool.connection_class(**{**self._pool.connection_kwargs, "protocol": 3})
        connection.connect()
        connection._parser.set_invalidation_push_handler(self._invalidated)
        connection.send_command("CLIENT", "TRACKING", "ON")
        reply = connection.read_response()
        if reply not in (b"OK", "OK"):
            connection.disconnect()
            raise RedisConnectionError(f"CLIENT TRACKING ON answered {reply!r}")
        self._connection, self._pid = connection, os.getpid()
        return connection


def _forgets_key(name: str):
    """Django's single-key write ``name``, then the key is forgotten by the near cache."""

    def write(self, key, *args):
        try:
            return getattr(redis.RedisCacheClient, name)(self, key, *args)
        finally:
            self._written([key])

    write.__name__ = name
    return write


class ReusingRedisCacheClient(redis.RedisCacheClient):
    def __init__(self, servers, near_cache_entries: int = 10_000, **options) -> None:
        super().__init__(servers, **options)
        self._near_cache_entries = near_cache_entries
        self._near: NearCache | None = None
        self._clients: dict[int, object] = {}

    def _near_cache(self) -> NearCache | None:
        if self._near is None and self._near_cache_entries > 0:
            self._near = NearCache(self._get_connection_pool(False), self._near_cache_entries)
        return self._near

    def get(self, key, default):
        near = self._near_cache()
        found = near.get_many([key]) if near is not None else None
        if found is None:
            return super().get(key, default)
        value = found.get(key)
        return default if value is None else self._serializer.loads(value)

    def get_many(self, keys):
        keys = list(keys)
        near = self._near_cache()
        found = near.get_many(keys) if near is not None else None
        if found is None:
            return super().get_many(keys)
        return {key: self._serializer.loads(value) for key, value in found.items()}

    # Writes: Django's, then forget the written keys here (Redis tells the other threads
    # and processes; this one must not depend on the push arriving before its next read).
    def _written(self, keys) -> None:
        if self._near is not None:
            self._near.discard(keys)

    add = _forgets_key("add")
    set = _forgets_key("set")
    touch = _forgets_key("touch")
    delete = _forgets_key("delete")
    incr = _forgets_key("incr")

    def set_many(self, data, timeout):
        try:
            super().set_many(data, timeout)
        finally:
            self._written(list(data))

    def delete_many(self, keys):
        keys = list(keys)
        try:
            super().delete_many(keys)
        finally:
            self._written(keys)

    def clear(self):
        try:
            return super().clear()
        finally:
            if self._near is not None:
                self._near.clear()

    def merge(self, key, function, timeout):
        """Store ``function(current value or None)`` at ``key`` atomically: the key is
        WATCHed while read, and the write (MULTI/EXEC) is retried with the new value if
        another client changed the key meanwhile, so no concurrent merge is lost."""
        client = self.get_client(key, write=True)
        try:
            with client.pipeline() as pipe:
                while True:
                    try:
                        pipe.watch(key)
                        raw = pipe.get(key)
                        value = function(None if raw is None else self._serializer.loads(raw))
                        pipe.multi()
                        if timeout == 0:
                            pipe.delete(key)
                        else:
                            pipe.set(key, self._serializer.dumps(value), ex=timeout)
                        pipe.execute()
                        return value
                    except WatchError:
                        continue
        finally:
            self._written([key])

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(redis.RedisCache):
    def __init__(self, server, params):
        options = dict(params.get("OPTIONS", {}))
        entries = options.pop("NEAR_CACHE_ENTRIES", 10_000)
        super().__init__(server, {**params, "OPTIONS": {**options, "near_cache_entries": entries}})
        self._class = ReusingRedisCacheClient

    def merge(self, key, function, timeout=DEFAULT_TIMEOUT, version=None):
        """Replace the value at ``key`` by ``function(value or None)``, atomically for every
        client of the Redis server (see ``ReusingRedisCacheClient.merge``); the new value."""
        key = self.make_and_validate_key(key, version=version)
        return self._cache.merge(key, function, self.get_backend_timeout(timeout))
