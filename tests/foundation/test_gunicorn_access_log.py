"""gunicorn under deploy/gunicorn.conf.py writes an access line only for a request that held
its worker a second or more: nginx logs every request (deploy/nginx.conf.template), and a
second line per request from gunicorn cost about 5 % of a worker's CPU. Checked with the real
gunicorn and that configuration file, serving a small WSGI application."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

APP = """
import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port: int, path: str, request_id: str) -> int:
    deadline = time.monotonic() + 30
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path, headers={"X-Request-ID": request_id})
            return conn.getresponse().status
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            conn.close()


def test_only_a_request_that_held_its_worker_a_second_is_logged_by_gunicorn(tmp_path):
    (tmp_path / "probe_app.py").write_text(APP)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": str(tmp_path),
        "STOCKPIPE_GUNICORN_BIND": f"127.0.0.1:{port}",
        "STOCKPIPE_RUN_DIR": str(tmp_path),
        "WEB_CONCURRENCY": "1",
    }
    log = tmp_path / "gunicorn.log"
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "probe_app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            assert get(port, "/fast", "fast-1") == 200
            assert get(port, "/slow", "slow-1") == 200
            assert get(port, "/fast", "fast-2") == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    text = log.read_text()
    assert "rid=slow-1" in text, text
    assert '"GET /slow HTTP/1.1" 200' in text, text
    assert "rid=fast" not in text, text
    assert "Booting worker" in text  # the error log still goes to stdout
