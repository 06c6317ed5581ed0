"""The shipped deployment (deploy/run: nginx in front of gunicorn, a worker) as a process
of a reliability test, on the test's database, with production settings."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import behind_transaction_pooler, redis_test_url
from tests.reliability.conftest import ROOT, database_url, wait_until
from tests.smtp import free_port

REDIS_CACHE_URL = redis_test_url("deployment")  # this suite's Redis database


@dataclass
class Deployment:
    url: str
    run_dir: Path
    process: subprocess.Popen
    tls: ssl.SSLContext  # trusts the stack's self-signed certificate

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        with urllib.request.urlopen(self.url + path, timeout=timeout, context=self.tls) as r:
            return r.status, r.read()

    def stop(self) -> None:
        """deploy/run stops its processes on SIGTERM; its process group is killed if not."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def start(tmp_path: Path, smtp_port: int | None = None, **env: str) -> Deployment:
    """Run deploy/run as the README says, and return once nginx answers a page over HTTPS."""
    run_dir = tmp_path / "run"
    https_port = free_port()
    environment = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "stockpipe.settings.production",
        "SECRET_KEY": "reliability-" + "s3cr3t-" * 8,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database_url(),
        "DATABASE_TRANSACTION_POOLING": "true" if behind_transaction_pooler() else "false",
        "CACHE_URL": REDIS_CACHE_URL,
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp_port}" if smtp_port else "consolemail://",
        "STOCKPIPE_RUN_DIR": str(run_dir),
        "STATIC_ROOT": str(tmp_path / "static"),
        "STOCKPIPE_HTTPS_PORT": str(https_port),
        "STOCKPIPE_HTTP_PORT": str(free_port()),
        "STOCKPIPE_GUNICORN_BIND": f"127.0.0.1:{free_port()}",
        "WEB_CONCURRENCY": "2",
        "STOCKPIPE_CRON": "false",
        **env,
    }
    log = open(tmp_path / "deploy-run.log", "w")  # noqa: SIM115
    process = subprocess.Popen(
        [str(ROOT / "deploy" / "run")],
        cwd=ROOT,
        env=environment,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    deployment = Deployment(
        f"https://127.0.0.1:{https_port}", run_dir, process, ssl.create_default_context()
    )

    def answers() -> bool:
        if process.poll() is not None:
            raise AssertionError((tmp_path / "deploy-run.log").read_text())
        cert = run_dir / "self-signed.crt"
        if not cert.exists():
            return False
        try:
            deployment.tls = ssl.create_default_context(cafile=str(cert))
            return deployment.get("/accounts/login/")[0] == 200
        except (OSError, ssl.SSLError):
            return False

    try:
        wait_until(answers, timeout=180, interval=0.5, message="deploy/run to serve pages")
    except BaseException:
        deployment.stop()
        raise
    return deployment
