"""Set-up shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlparse

PG_ADMIN = os.environ.get("BENCH_PG_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")


def recreate_postgres(url: str) -> None:
    """Drop and create the database ``url`` names, so every run starts from nothing."""
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def fresh_database_url(db: str, workdir: Path, pg_name: str) -> str:
    """A new empty database: a SQLite file in ``workdir`` or PostgreSQL database ``pg_name``."""
    if db == "sqlite":
        return f"sqlite:///{workdir / 'bench.sqlite3'}"
    url = f"{PG_ADMIN.rsplit('/', 1)[0]}/{pg_name}"
    recreate_postgres(url)
    return url
