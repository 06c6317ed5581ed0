"""Harness for reliability tests: real processes against the test's PostgreSQL database."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from django.db import connection

from tests.conftest import behind_transaction_pooler, redis_test_url
from tests.smtp import free_port

ROOT = Path(__file__).resolve().parents[2]
# Redis databases of this suite: RQ's queues, and the cache shared by the "machines" of
# test_several_machines (the deployed-configuration stage uses 7, deployment.py 8).
RQ_REDIS_URL = os.environ.get("RELIABILITY_RQ_REDIS_URL", redis_test_url("rq"))
CACHE_REDIS_URL = os.environ.get("RELIABILITY_CACHE_REDIS_URL", redis_test_url("machines_cache"))
TASK_BACKENDS = ("database", "rq")
# For the tests whose work runs on task workers: once with each backend (README, Deployment).
both_task_backends = pytest.mark.parametrize("task_backend", TASK_BACKENDS)


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
    """Start project processes (actors, workers, servers) with the test's database (through
    PgBouncer when the suite runs behind it) and the test's task backend: every process of a
    test enqueues to and works from the same one."""

    def __init__(
        self, log_dir: Path, smtp_port: int | None = None, task_backend: str = "database"
    ) -> None:
        self.running: list[subprocess.Popen] = []
        self.log_dir = log_dir
        self.smtp_port = smtp_port
        self.task_backend = task_backend

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "stockpipe.settings",
            "DATABASE_URL": database_url(),
            "DEBUG": "false",
            "STOCKPIPE_DELIVERY_BACKOFF_BASE": "0.2",
            "STOCKPIPE_DELIVERY_BACKOFF_MAX": "1",
            "PYTHONPATH": str(ROOT),
            "DATABASE_TRANSACTION_POOLING": "true" if behind_transaction_pooler() else "false",
            "TASKS_BACKEND": self.task_backend,
        }
        if self.task_backend == "rq":
            env["REDIS_URL"] = RQ_REDIS_URL
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
        """A task worker of the test's backend, started as deploy/run starts one."""
        if self.task_backend == "rq":
            args = ["rqworker", "default", "--with-scheduler"]
            args += ["--job-class", "django_tasks_rq.backend.Job"]
        else:
            args = ["db_worker", "--interval", "0.1", "--no-startup-delay", "--no-reload"]
        return self.start("manage.py", *args, log="worker", **env)

    @staticmethod
    def kill(proc: subprocess.Popen) -> None:
        """SIGKILL the process and everything it started (its machine died). An RQ worker
        runs each job in a forked work horse with a process group of its own, so the
        descendants are found by parent pid, not by group."""
        doomed = [proc.pid, *descendants(proc.pid)]
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        proc.wait(10)
        wait_until(lambda: not any(alive(pid) for pid in doomed[1:]), message="processes to die")

    @staticmethod
    def stop(proc: subprocess.Popen) -> None:
        """SIGTERM (a worker finishes its current task), then SIGKILL after 10 s."""
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                Processes.kill(proc)

    def stop_all(self) -> None:
        for proc in self.running:
            self.stop(proc)


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def descendants(pid: int) -> list[int]:
    """The processes ``pid`` started, and theirs (Linux: read from /proc)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def wait_until(predicate, timeout: float = 60, interval: float = 0.1, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {message}")


@pytest.fixture
def task_backend() -> str:
    """The task backend of the test's processes; ``both_task_backends`` runs a test with each."""
    return "database"


@pytest.fixture
def processes(smtp_server, tmp_path, task_backend):
    """Logs of servers and workers are in the test's ``tmp_path`` (pytest keeps the last
    three runs' directories)."""
    if task_backend == "rq":
        import redis

        redis.Redis.from_url(RQ_REDIS_URL).flushdb()
    procs = Processes(tmp_path, smtp_port=smtp_server.port, task_backend=task_backend)
    yield procs
    procs.stop_all()
