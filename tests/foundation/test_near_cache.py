"""The Redis cache backend's near cache (``stockpipe.cache``), against a real Redis server.

Each ``RedisCache`` object has its own tracking connection, exactly as two processes do;
the server cannot tell them apart. One test also writes from a separate OS process.
"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import redis

from stockpipe.cache import RedisCache
from tests.conftest import redis_test_url

LOCATION = redis_test_url("near_cache")


def new_cache(**options) -> RedisCache:
    return RedisCache(LOCATION, {"OPTIONS": options})


@pytest.fixture
def admin():
    client = redis.Redis.from_url(LOCATION)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def round_trips(admin: redis.Redis) -> int:
    """Read commands the server has executed so far (any client)."""
    stats = admin.info("commandstats")
    return sum(stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("get", "mget"))


def near_values(cache: RedisCache) -> dict:
    return cache._cache._near._values


def read_once_pushed(reader: RedisCache, key: str, expected, within: float = 2.0):
    """``reader.get(key)`` once it gives ``expected`` (Redis answers the writer and pushes
    the invalidation in the same pass of its event loop, but writes the two sockets one
    after the other: a read in between is served from memory), or the last value read
    after ``within`` seconds: what is never invalidated stays stale and fails the test."""
    deadline = time.monotonic() + within
    while (value := reader.get(key)) != expected and time.monotonic() < deadline:
        time.sleep(0.001)
    return value


def tracking_id(cache: RedisCache) -> int:
    connection = cache._cache._near._connection
    connection.send_command("CLIENT", "ID")
    return connection.read_response()


def test_a_repeated_read_is_served_without_asking_redis(admin):
    reader = new_cache()
    reader.set_many({"a": 1, "b": "two"})
    assert reader.get_many(["a", "b"]) == {"a": 1, "b": "two"}
    before = round_trips(admin)
    for _ in range(50):
        assert reader.get_many(["a", "b"]) == {"a": 1, "b": "two"}
        assert reader.get("a") == 1
    assert round_trips(admin) == before


@pytest.mark.parametrize(
    "change, expected",
    [
        (lambda writer: writer.set("k", "new", 30), "new"),
        (lambda writer: writer.delete("k"), None),
        (lambda writer: writer.set_many({"k": "many"}, 30), "many"),
        (lambda writer: writer.clear(), None),
        (lambda writer: writer.touch("k", 0), None),  # expire now
    ],
    ids=["set", "delete", "set_many", "flush", "touch-expire"],
)
def test_another_writers_change_is_seen_by_the_next_read(admin, change, expected):
    reader, writer = new_cache(), new_cache()
    writer.set("k", "old", 30)
    assert reader.get("k") == "old"
    assert reader.get("k") == "old"  # now served from memory
    change(writer)
    assert read_once_pushed(reader, "k", expected) == expected


def test_a_change_by_another_process_is_seen(admin):
    reader = new_cache()
    reader.set("k", "old", 30)
    assert reader.get("k") == "old"
    code = (
        f"import redis; r = redis.Redis.from_url({LOCATION!r}); "
        "r.set(':1:k', r.get(':1:k').replace(b'old', b'new'))"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert read_once_pushed(reader, "k", "new") == "new"


def test_own_write_is_seen_at_once(admin):
    """Own writes drop the key from memory themselves, not only through Redis's push."""
    cache = new_cache()
    cache.set("k", "old", 30)
    assert cache.get("k") == "old"
    assert cache.make_key("k").encode() in near_values(cache)
    cache.set("k", "new", 30)
    assert cache.make_key("k").encode() not in near_values(cache)  # before any push is read
    assert cache.get("k") == "new"
    cache.add("n", 1, 30)
    assert cache.get("n") == 1
    cache.incr("n")
    assert cache.make_key("n").encode() not in near_values(cache)
    assert cache.get("n") == 2
    cache.set_many({"k": "many"})
    assert cache.make_key("k").encode() not in near_values(cache)
    assert cache.get("k") == "many"


def test_an_entry_expires_with_its_key(admin):
    reader, writer = new_cache(), new_cache()
    writer.set("short", "v", 1)
    writer.set("long", "v", 60)
    assert reader.get_many(["short", "long"]) == {"short": "v", "long": "v"}
    time.sleep(1.2)
    assert reader.get_many(["short", "long"]) == {"long": "v"}


def test_an_entry_is_not_served_past_its_keys_ttl_without_a_push(admin):
    """Redis deletes an expired key (and pushes its invalidation) only when its expiry cycle
    gets to it; the entry's own deadline, the TTL read with the value, must not wait."""
    reader = new_cache()
    reader.set("k", "server", 30)
    reader.set("forever", "v", None)
    assert reader.get_many(["k", "forever"]) == {"k": "server", "forever": "v"}
    values = near_values(reader)
    k = reader.make_key("k").encode()
    assert 29 < values[k][1] - time.monotonic() <= 30
    assert values[reader.make_key("forever").encode()][1] == float("inf")
    # Past its deadline, with no invalidation from Redis: Redis is asked again.
    values[k] = (reader._cache._serializer.dumps("stale"), time.monotonic() - 0.001)
    before = round_trips(admin)
    assert reader.get("k") == "server"
    assert round_trips(admin) == before + 1


def test_a_lost_tracking_connection_empties_the_near_cache(admin):
    """Invalidations sent while the connection was down are lost, so nothing read before
    may be served from memory afterwards."""
    reader, writer = new_cache(), new_cache()
    writer.set("k", "old", 30)
    assert reader.get("k") == "old"
    killed = tracking_id(reader)
    assert "t" in admin.client_list(client_id=[killed])[0]["flags"]  # t: tracking on
    admin.client_kill_filter(_id=killed)
    writer.set("k", "new", 30)  # its invalidation has nobody to go to
    assert reader.get("k") == "new"
    assert reader.get("k") == "new"
    assert tracking_id(reader) != killed  # reconnected, tracking again
    assert "t" in admin.client_list(client_id=[tracking_id(reader)])[0]["flags"]


def test_memory_is_bounded(admin):
    reader, writer = new_cache(NEAR_CACHE_ENTRIES=3), new_cache()
    writer.set_many({f"k{i}": i for i in range(10)})
    for _ in range(2):
        assert reader.get_many([f"k{i}" for i in range(10)]) == {f"k{i}": i for i in range(10)}
        assert len(near_values(reader)) == 3
    writer.set("k9", "changed", 30)
    assert reader.get("k9") == "changed"


def test_zero_entries_disables_it(admin):
    reader = new_cache(NEAR_CACHE_ENTRIES=0)
    reader.set("k", "v", 30)
    before = round_trips(admin)
    assert reader.get("k") == "v"
    assert reader.get("k") == "v"
    assert round_trips(admin) == before + 2
