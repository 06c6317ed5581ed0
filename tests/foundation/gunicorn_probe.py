"""The real gunicorn under deploy/gunicorn.conf.py, serving a small WSGI application the
test writes: for tests of what that configuration does (logging, forking)."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serving(tmp_path: Path, app_source: str) -> Iterator[int]:
    """gunicorn with one worker serving ``app_source``'s ``application``; yields its port.
    Its output goes to ``tmp_path / "gunicorn.log"``."""
    (tmp_path / "probe_app.py").write_text(app_source)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "STOCKPIPE_GUNICORN_BIND": f"127.0.0.1:{port}",
        "STOCKPIPE_RUN_DIR": str(tmp_path),
        "WEB_CONCURRENCY": "1",
    }
    with (tmp_path / "gunicorn.log").open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "probe_app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield port
        finally:
            server.terminate()
            server.wait(timeout=30)


def get(port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    """Status and body of ``GET path``, waiting up to 30 s for the server to listen."""
    deadline = time.monotonic() + 30
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers=headers or {})
            response = conn.getresponse()
            return response.status, response.read()
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            conn.close()
