"""The Redis databases the tests flush by default are none that a benchmark or the
deployed-configuration stage flushes by default: run side by side, none wipes another's data."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import REDIS_DB_DEFAULTS, redis_test_db

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_URL = re.compile(r"redis://127\.0\.0\.1:6379/(\d+)")


def flushed_elsewhere() -> dict[int, list[str]]:
    """Default Redis database -> the benchmarks and scripts that flush it."""
    found: dict[int, list[str]] = {}
    for path in [*(ROOT / "benchmarks").glob("*.py"), ROOT / "scripts" / "test-deployed"]:
        for number in set(DEFAULT_URL.findall(path.read_text())):
            found.setdefault(int(number), []).append(path.name)
    return found


def test_the_tests_default_databases_are_nobody_elses(monkeypatch):
    monkeypatch.delenv("TEST_REDIS_DB_BASE", raising=False)
    elsewhere = flushed_elsewhere()
    assert elsewhere  # the defaults are found (benchmarks/reservations.py names one)
    clashes = {
        owner: elsewhere[redis_test_db(owner)]
        for owner in REDIS_DB_DEFAULTS
        if redis_test_db(owner) in elsewhere
    }
    assert clashes == {}
