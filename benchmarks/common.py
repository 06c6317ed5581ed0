"""Set-up shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
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


def setup_django(url: str) -> None:
    """Configure Django on ``url`` as production would run (no query log, quiet logs,
    e-mail to memory) and migrate it."""
    os.environ["DATABASE_URL"] = url
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockpipe.settings")
    os.environ["EMAIL_URL"] = "memorymail://"  # the seed's e-mails go to memory, not SMTP
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["DEBUG"] = "False"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)


def run_per_database(script: str) -> int:
    """Run ``script`` with this process's arguments once per database, each in a process of
    its own (Django is configured once per process); the worst exit code."""
    return run_children(script, [["--db", db] for db in ("sqlite", "postgres")])[0]


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The options every benchmark script takes: ``--db``, ``--repeat``, ``--check``."""
    parser = argparse.ArgumentParser(
        description=doc, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument(
        "--repeat", type=int, default=3, help="timed runs of each route; the best counts"
    )
    parser.add_argument("--check", action="store_true", help="exit non-zero if a target is missed")
    return parser


def run_children(script: str, arg_sets: list[list[str]]) -> tuple[int, list[dict]]:
    """Run ``script`` once per argument set (appended to this process's arguments, so they
    win), each in a process of its own; pass their output through and collect the
    ``RESULT {json}`` lines they print. Returns the worst exit code and the results."""
    worst, results = 0, []
    for extra in arg_sets:
        proc = subprocess.Popen(
            [sys.executable, script, *sys.argv[1:], *extra], stdout=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            if line.startswith("RESULT "):
                results.append(json.loads(line[len("RESULT ") :]))
        worst = max(worst, proc.wait())
    return worst, results
