"""Finding 11 (d) of issue 12: the production cache uses the Redis database REDIS_URL names.

The production settings are loaded in a fresh interpreter (they are read once, from the
environment); the cache it builds writes into this module's Redis DB (tests/conftest.py,
``redis_test_db``) and is read back from there.
"""

from __future__ import annotations

import json

import pytest
import redis

from tests.conftest import redis_test_url
from tests.production import run_with_production_settings

PROBE = """
import json, django
django.setup()
from django.conf import settings
from django.core.cache import cache
cache.set("settings-probe", "here", 30)
print(json.dumps(settings.CACHES["default"]))
"""

OWN_DB = redis_test_url("production_settings")  # flushed around each test


def _production_cache(**env: str) -> dict:
    done = run_with_production_settings(PROBE, ALLOWED_HOSTS="example.com", **env)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.fixture
def own_db():
    client = redis.Redis.from_url(OWN_DB)
    client.flushdb()
    yield client
    client.flushdb()
    client.close()


def test_cache_uses_the_database_of_redis_url(own_db):
    config = _production_cache(REDIS_URL=OWN_DB)
    assert config["BACKEND"] == "stockpipe.cache.RedisCache"
    assert config["LOCATION"] == OWN_DB
    assert any(b"settings-probe" in key for key in own_db.keys("*"))


def test_cache_url_wins_over_redis_url(own_db):
    config = _production_cache(REDIS_URL=redis_test_url("webhooks"), CACHE_URL=OWN_DB)
    assert config["LOCATION"] == OWN_DB
    assert any(b"settings-probe" in key for key in own_db.keys("*"))


def test_redis_url_without_a_database_number_is_kept_as_given():
    config = _production_cache(REDIS_URL="redis://127.0.0.1:6379")
    assert config["LOCATION"] == "redis://127.0.0.1:6379"
