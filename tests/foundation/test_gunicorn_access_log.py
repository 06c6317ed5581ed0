"""gunicorn under deploy/gunicorn.conf.py writes an access line only for a request that held
its worker a second or more: nginx logs every request (deploy/nginx.conf.template), and a
second line per request from gunicorn cost about 5 % of a worker's CPU. Checked with the real
gunicorn and that configuration file, serving a small WSGI application."""

from __future__ import annotations

from tests.foundation.gunicorn_probe import get, serving

APP = """
import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(1.2)
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


def test_only_a_request_that_held_its_worker_a_second_is_logged_by_gunicorn(tmp_path):
    with serving(tmp_path, APP) as port:
        for path, request_id in (("/fast", "fast-1"), ("/slow", "slow-1"), ("/fast", "fast-2")):
            status, _ = get(port, path, {"X-Request-ID": request_id})
            assert status == 200
    text = (tmp_path / "gunicorn.log").read_text()
    assert "rid=slow-1" in text, text
    assert '"GET /slow HTTP/1.1" 200' in text, text
    assert "rid=fast" not in text, text
    assert "Booting worker" in text  # the error log still goes to stdout
