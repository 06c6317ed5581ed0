"""The read-your-writes entry only ever moves forward: two requests of one client may finish
in either order, and the entry keeps the later write's time and WAL position whichever is
stored last; on the shared Redis cache the merge is atomic across clients."""

from __future__ import annotations

import threading

import pytest
from django.core.cache import cache
from django.test import override_settings

from app.core import cache_merge
from app.selectors import replica
from stockpipe.cache import RedisCache
from tests.conftest import redis_test_url

REDIS = {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": redis_test_url("write_entry")}
LOCAL = {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
KEY = replica.KEY_PREFIX + "test-client"


@pytest.fixture(params=["redis", "local"])
def shared(request):
    with override_settings(CACHES={"default": REDIS if request.param == "redis" else LOCAL}):
        cache.clear()
        yield cache
        cache.clear()


def test_an_older_write_stored_last_does_not_move_the_entry_back(shared):
    replica._remember(KEY, {"at": 200.0, "lsn": 2_000})
    replica._remember(KEY, {"at": 100.0, "lsn": 1_000})  # read before, stored after
    assert shared.get(KEY) == {"at": 200.0, "lsn": 2_000}
    replica._remember(KEY, {"at": 150.0, "lsn": 3_000})
    assert shared.get(KEY) == {"at": 200.0, "lsn": 3_000}
    # A position that could not be read means "the primary's at read time": never forgotten.
    replica._remember(KEY, {"at": 160.0, "lsn": replica.UNKNOWN})
    replica._remember(KEY, {"at": 170.0, "lsn": 4_000})
    assert shared.get(KEY) == {"at": 200.0, "lsn": replica.UNKNOWN}


def test_concurrent_writes_of_one_client_keep_the_furthest_position(shared):
    barrier = threading.Barrier(8)

    def client(n: int) -> None:
        barrier.wait()
        for i in range(25):
            replica._remember(KEY, {"at": float(n), "lsn": 1_000 * i + n})

    threads = [threading.Thread(target=client, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert shared.get(KEY) == {"at": 7.0, "lsn": 24_007}


def test_redis_merge_retries_when_another_client_wrote_in_between():
    """Another process (its own cache object and connections) stores a further position
    between this merge's read and its write: the write is retried on the new value."""
    here = RedisCache(REDIS["LOCATION"], {})
    other = RedisCache(REDIS["LOCATION"], {})
    here.clear()
    here.set(KEY, {"lsn": 1_000}, 60)
    seen = []

    def further(entry):
        seen.append(entry["lsn"])
        if len(seen) == 1:
            other.set(KEY, {"lsn": 3_000}, 60)
        return {"lsn": max(entry["lsn"], 2_000)}

    try:
        assert here.merge(KEY, further, 60) == {"lsn": 3_000}
        assert seen == [1_000, 3_000]
        assert other.get(KEY) == here.get(KEY) == {"lsn": 3_000}
        assert (
            0
            < here._cache.get_client(here.make_and_validate_key(KEY)).ttl(
                here.make_and_validate_key(KEY)
            )
            <= 60
        )
    finally:
        here.clear()


def test_local_merge_holds_off_another_thread_until_it_has_written(shared):
    """Another thread's merge that starts while this one is between read and write ends
    on top of this one's value: on the local-memory cache it waits for it (the lock), on
    Redis this one's write is retried on the other's value (WATCH)."""
    other = threading.Thread(
        target=cache_merge.merge,
        args=(shared, KEY, lambda entry: {"lsn": max(entry["lsn"] if entry else 0, 3_000)}, 60),
    )

    def further(entry):
        if not other.is_alive() and other.ident is None:
            other.start()
            other.join(0.3)  # it waits for this merge to finish (or, racing, overtakes it)
        return {"lsn": max(entry["lsn"] if entry else 0, 2_000)}

    assert cache_merge.merge(shared, KEY, further, 60)["lsn"] in (2_000, 3_000)
    other.join()
    assert shared.get(KEY) == {"lsn": 3_000}
