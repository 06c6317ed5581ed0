"""gunicorn's master freezes what it loaded before it forks a worker (``pre_fork`` in
deploy/gunicorn.conf.py): a worker's full garbage collection then walks only what the
worker made, not the whole loaded application (70-180 ms a time, in the request it landed
in). Checked with the real gunicorn and that configuration file: the worker reports how
many objects are frozen in it."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
import time

from tests.foundation.test_gunicorn_access_log import ROOT, free_port

APP = """
import gc

LOADED = [{"n": i} for i in range(5000)]  # what the master loaded (preload_app)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(gc.get_freeze_count()).encode()]
"""


def frozen_in_worker(port: int) -> int:
    deadline = time.monotonic() + 30
    while True:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/")
            return int(conn.getresponse().read())
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
        finally:
            conn.close()


def test_a_worker_starts_with_the_masters_objects_frozen(tmp_path):
    (tmp_path / "probe_gc_app.py").write_text(APP)
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
            [sys.executable, "-m", "gunicorn", "-c", "deploy/gunicorn.conf.py", "probe_gc_app"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            frozen = frozen_in_worker(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
    assert frozen > 5000, (tmp_path / "gunicorn.log").read_text()
