"""Set-up shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
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
    codes = [
        subprocess.call([sys.executable, script, *sys.argv[1:], "--db", db])  # last --db wins
        for db in ("sqlite", "postgres")
    ]
    return max(codes)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def production_env(db_url: str, **extra: str) -> dict[str, str]:
    """The environment of a production server (``benchmarks.api_settings``: production
    settings plus ``/bench/constant``) on ``db_url``, over plain HTTP on loopback."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "benchmarks.api_settings",
        "DATABASE_URL": db_url,
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "127.0.0.1",
        "SECURE_SSL_REDIRECT": "false",
        "LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(ROOT),
        **extra,
    }


@contextlib.contextmanager
def gunicorn(
    env: dict[str, str], port: int, *, workers: int = 2, config: bool = False
) -> Iterator[str]:
    """gunicorn serving ``env``'s settings on 127.0.0.1:``port``; yields its base URL once
    ``/bench/constant`` answers, stops it on exit. ``config``: with the deployment's
    ``deploy/gunicorn.conf.py`` (what ``deploy/run`` starts; access log discarded)."""
    cmd = [sys.executable, "-m", "gunicorn"]
    env = {**env, "WEB_CONCURRENCY": str(workers)}
    if config:
        env["STOCKPIPE_GUNICORN_BIND"] = f"127.0.0.1:{port}"
        env.setdefault("STOCKPIPE_RUN_DIR", tempfile.mkdtemp(prefix="stockpipe-gunicorn-"))
        env.setdefault("GUNICORN_LOG_LEVEL", "warning")
        cmd += ["-c", str(ROOT / "deploy" / "gunicorn.conf.py")]
    else:
        cmd += ["stockpipe.wsgi:application", "--bind", f"127.0.0.1:{port}"]
        cmd += ["--workers", str(workers), "--log-level", "warning"]
    server = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{base}/bench/constant", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise RuntimeError("gunicorn did not start") from None
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)
