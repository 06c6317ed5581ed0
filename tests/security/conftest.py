"""Security tests run against the production cache (its own Redis DB, tests/conftest.py, flushed around each test)."""

from __future__ import annotations

import pytest
from django.core.cache import cache
from django.test import override_settings

from app.services import cache_guard
from tests.conftest import redis_test_url

REDIS_CACHE = {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": redis_test_url("security")}


@pytest.fixture
def redis_cache():
    """The production cache backend (Redis), as ``stockpipe.settings.production`` uses it."""
    with override_settings(CACHES={"default": REDIS_CACHE}):
        cache.clear()
        assert cache_guard.enabled()
        yield cache
        cache.clear()


@pytest.fixture(autouse=True)
def _fresh_local_cache():
    """Throttle and lockout counters of the default (per-process) cache start empty."""
    cache.clear()
    yield
    cache.clear()
