"""One settings module: every STOCKPIPE_* option and every environment variable the settings
read is in the README's configuration table, and each option is read from its variable."""

from __future__ import annotations

import re
from pathlib import Path

import environ
import pytest

from app import conf

ROOT = Path(__file__).resolve().parents[2]


def readme_configuration_names() -> set[str]:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Configuration", 1)[1].split("\n## ", 1)[0]
    names: set[str] = set()
    for line in section.splitlines():
        if line.startswith("| `"):
            names.update(re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1]))
    return names


def variables_read_by_settings() -> set[str]:
    found: set[str] = set()
    for path in (ROOT / "stockpipe" / "settings").glob("*.py"):
        found.update(re.findall(r"env\.\w+\(\s*\"([A-Z][A-Z0-9_]+)\"", path.read_text()))
    return found


def test_every_option_and_variable_is_documented():
    documented = readme_configuration_names()
    expected = variables_read_by_settings() | {option.name for option in conf.OPTIONS}
    assert expected - documented == set()


def test_settings_read_no_stockpipe_option_outside_conf():
    """STOCKPIPE_* options are declared once, in app/conf.py."""
    assert not {n for n in variables_read_by_settings() if n.startswith("STOCKPIPE_")}


SAMPLES = {"str": ("x@example.com", "x@example.com"), "int": ("7", 7), "float": ("2.5", 2.5)}


@pytest.mark.parametrize("option", conf.OPTIONS, ids=lambda o: o.name)
def test_each_option_is_read_from_its_environment_variable(option, monkeypatch):
    if option.kind == "bool":
        raw, expected = ("false", False) if option.default else ("true", True)
    else:
        raw, expected = SAMPLES[option.kind]
    monkeypatch.setenv(option.name, raw)
    assert conf.environment_settings(environ.Env())[option.name] == expected
    monkeypatch.delenv(option.name)
    assert conf.environment_settings(environ.Env())[option.name] == option.default


def test_code_reads_the_current_setting(settings):
    settings.STOCKPIPE_MANAGER_EMAIL = "boss@example.com"
    assert conf.manager_email() == "boss@example.com"
    del settings.STOCKPIPE_MANAGER_EMAIL
    assert conf.manager_email() == "manager@company.com"


@pytest.mark.sqlite
def test_sqlite_connections_are_set_up_for_a_writer_beside_readers(db):
    """Every SQLite connection: WAL (readers beside a writer), NORMAL sync, a 64 MiB page
    cache (a large upsert's index pages stay in it)."""
    from django.db import connection

    from stockpipe.settings import SQLITE_CACHE_KIB

    with connection.cursor() as cursor:
        found = {}
        for pragma in ("journal_mode", "synchronous", "cache_size"):
            cursor.execute(f"PRAGMA {pragma}")
            found[pragma] = cursor.fetchone()[0]
    assert found == {"journal_mode": "wal", "synchronous": 1, "cache_size": -SQLITE_CACHE_KIB}
    assert SQLITE_CACHE_KIB == 65_536
