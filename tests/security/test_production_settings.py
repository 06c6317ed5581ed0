"""Finding 11 (d) of issue 12: the production cache uses the Redis database REDIS_URL names.

The production settings are loaded in a fresh interpreter (they are read once, from the
environment); the cache it builds writes into Redis DB 5 and is read back from there.
"""

from __future__ import annotations

import json

import pytest
import redis

from tests.production import run_with_production_settings

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.core.cache import cache
cache.set("settings-probe", "here", 30)
print(json.dumps(settings.CACHES["default"]))
"""


def _production_cache(**env: str) -> dict:
    done = run_with_production_settings(PROBE, ALLOWED_HOSTS="example.com", **env)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def db5():
    client = redis.Redis.from_url("redis://127.0.0.1:6379/5")
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_cache_uses_the_database_of_redis_url(db5):
    config = _production_cache(REDIS_URL="redis://127.0.0.1:6379/5")
    assert config["BACKEND"] == "stockpipe.cache.RedisCache"
    assert config["LOCATION"] == "redis://127.0.0.1:6379/5"
    assert any(b"settings-probe" in key for key in db5.keys("*"))


def test_cache_url_wins_over_redis_url(db5):
    config = _production_cache(
        REDIS_URL="redis://127.0.0.1:6379/0", CACHE_URL="redis://127.0.0.1:6379/5"
    )
    assert config["LOCATION"] == "redis://127.0.0.1:6379/5"
    assert any(b"settings-probe" in key for key in db5.keys("*"))


def test_redis_url_without_a_database_number_is_kept_as_given():
    config = _production_cache(REDIS_URL="redis://127.0.0.1:6379")
    assert config["LOCATION"] == "redis://127.0.0.1:6379"
