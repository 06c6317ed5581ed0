"""Harness for reliability tests: real processes against the test's PostgreSQL database."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/reliability/" in str(item.fspath):
            item.add_marker(pytest.mark.postgres)
            item.add_marker(pytest.mark.slow)


def database_url() -> str:
    s = connection.settings_dict
    if connection.vendor == "postgresql":
        auth = s["USER"] + (f":{s['PASSWORD']}" if s["PASSWORD"] else "")
        return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"
    return f"sqlite:///{s['NAME']}"


class Processes:
    """Start project processes (actors, workers, servers) with the test's database."""

    def __init__(self, log_dir: Path, smtp_port: int | None = None) -> None:
        self.running: list[subprocess.Popen] = []
        self.log_dir = log_dir
        self.smtp_port = smtp_port

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "stockpipe.settings",
            "DATABASE_URL": database_url(),
            "DEBUG": "false",
            "STOCKPIPE_DELIVERY_BACKOFF_BASE": "0.2",
            "STOCKPIPE_DELIVERY_BACKOFF_MAX": "1",
            "PYTHONPATH": str(ROOT),
        }
        if self.smtp_port:
            env["EMAIL_URL"] = f"smtp://127.0.0.1:{self.smtp_port}"
        env.update(extra)
        return env

    def start(self, *args: str, log: str | None = None, **env: str) -> subprocess.Popen:
        """Start a process; its output is piped, or written to ``log`` in the log directory
        for long-running servers and workers, whose output nobody reads while they run (a
        full pipe would block them)."""
        output = subprocess.PIPE
        if log is not None:
            output = open(self.log_dir / f"{len(self.running)}-{log}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=ROOT,
            env=self.env(**env),
            stdout=output,
            stderr=subprocess.STDOUT,
            text=True,
        )
        if log is not None:
            output.close()  # the child has its own descriptor
        self.running.append(proc)
        return proc

    def actors(self, calls: list[list[str]], **env: str) -> list[str]:
        """Run actor processes together (they start at the same instant); return their output."""
        start_at = str(time.time() + 2.0)
        procs = [
            self.start("-m", "tests.reliability.actors", *call, START_AT=start_at, **env)
            for call in calls
        ]
        outputs = []
        for proc in procs:
            out, _ = proc.communicate(timeout=600)
            assert proc.returncode == 0, out
            outputs.append(out)
        return outputs

    def web(self, workers: int = 2) -> str:
        """Serve the project with gunicorn; return its base URL once it answers."""
        port = free_port()
        self.start(
            "-m",
            "gunicorn",
            "stockpipe.wsgi",
            "-w",
            str(workers),
            "-b",
            f"127.0.0.1:{port}",
            "--timeout",
            "120",
            log="gunicorn",
            CONN_MAX_AGE="0",
        )
        url = f"http://127.0.0.1:{port}"

        def answers() -> bool:
            try:
                urllib.request.urlopen(f"{url}/api/openapi.json", timeout=2)
                return True
            except OSError:
                return False

        wait_until(answers, timeout=60, message="gunicorn to answer")
        return url

    def manage(self, *args: str, timeout: float = 120, **env: str) -> str:
        proc = self.start("manage.py", *args, **env)
        out, _ = proc.communicate(timeout=timeout)
        assert proc.returncode == 0, out
        return out

    def worker(self, **env: str) -> subprocess.Popen:
        return self.start(
            "manage.py",
            "db_worker",
            "--interval",
            "0.1",
            "--no-startup-delay",
            "--no-reload",
            log="worker",
            **env,
        )

    def stop_all(self) -> None:
        for proc in self.running:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture
def processes(smtp_server, tmp_path):
    """Logs of servers and workers are in the test's ``tmp_path`` (pytest keeps the last
    three runs' directories)."""
    procs = Processes(tmp_path, smtp_port=smtp_server.port)
    yield procs
    procs.stop_all()
