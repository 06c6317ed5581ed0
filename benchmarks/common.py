"""Set-up shared by the benchmark scripts (run as ``python benchmarks/<name>.py``)."""

from __future__ import annotations

import argparse
import contextlib
import json
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


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class DeployedStack:
    """The shipped server configuration, started as README's "Deployment" says: ``deploy/run``
    (production settings, migrate, collectstatic, gunicorn with ``deploy/gunicorn.conf.py``
    behind nginx over TLS with a self-signed certificate, the task worker, the every-minute
    commands), on ``db_url`` (created fresh) and ``redis_url`` (flushed), in ``workdir``.

    Only ports, paths and the secret differ from a deployment, as in ``scripts/test-deployed``.
    ``ports``: the first of three consecutive ports (HTTPS, HTTP, gunicorn); default: free ones.
    Use as a context manager; leaving it stops the whole stack (its own process group)."""

    def __init__(self, db_url: str, redis_url: str, workdir: Path, ports: int | None = None):
        import secrets

        https, http, wsgi = (
            (ports, ports + 1, ports + 2) if ports else (free_port(), free_port(), free_port())
        )
        self.url = f"https://127.0.0.1:{https}"
        self.workdir = workdir
        self.ca = workdir / "run" / "self-signed.crt"
        self.log = workdir / "deploy-run.log"
        self.env = {
            "DJANGO_SETTINGS_MODULE": "stockpipe.settings.production",
            "SECRET_KEY": f"bench-{secrets.token_urlsafe(60)}",
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DATABASE_URL": db_url,
            "REDIS_URL": redis_url,
            "CACHE_URL": redis_url,
            "EMAIL_URL": "memorymail://",
            "STOCKPIPE_HTTPS_PORT": str(https),
            "STOCKPIPE_HTTP_PORT": str(http),
            "STOCKPIPE_GUNICORN_BIND": f"127.0.0.1:{wsgi}",
            "STOCKPIPE_RUN_DIR": str(workdir / "run"),
            "STATIC_ROOT": str(workdir / "static"),
            "GUNICORN_LOG_LEVEL": "warning",
        }
        self.process: subprocess.Popen | None = None

    def __enter__(self) -> DeployedStack:
        import time
        import urllib.request

        import redis

        redis.Redis.from_url(self.env["REDIS_URL"]).flushdb()
        env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | self.env
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                [str(ROOT / "deploy" / "run")],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: stopped as a whole
            )
        deadline = time.monotonic() + 180
        while True:
            if self.process.poll() is not None:
                self._fail("deploy/run exited")
            if self.ca.exists():
                try:
                    urllib.request.urlopen(f"{self.url}/api/auth/csrf", context=self.tls())
                    return self
                except OSError:
                    pass
            if time.monotonic() > deadline:
                self._fail("the stack did not answer within 3 minutes")
            time.sleep(0.5)

    def __exit__(self, *exc) -> None:
        import signal

        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # deploy/run stops its processes
        try:
            self.process.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def tls(self):
        import ssl

        return ssl.create_default_context(cafile=str(self.ca))

    def manage_shell(self, code: str) -> str:
        """Python run by ``manage.py shell`` with the stack's settings and database."""
        env = {**os.environ, **self.env}
        return subprocess.run(
            [sys.executable, "manage.py", "shell", "-v0", "-c", code],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        ).stdout

    def _fail(self, message: str) -> None:
        self.__exit__()
        tail = self.log.read_text(errors="replace").splitlines()[-40:]
        raise SystemExit(f"{message}; deploy/run's log (last lines):\n" + "\n".join(tail))


def percentiles(latencies: list[float]) -> tuple[float, float]:
    """p50 and p99 of ``latencies``."""
    import statistics

    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49], cuts[98]


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
