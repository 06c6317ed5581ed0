"""gunicorn's master freezes what it loaded before it forks a worker (``pre_fork`` in
deploy/gunicorn.conf.py): a worker's full garbage collection then walks only what the
worker made, not the whole loaded application (70-180 ms a time, in the request it landed
in). Checked with the real gunicorn and that configuration file: the worker reports how
many objects are frozen in it."""

from __future__ import annotations

from tests.foundation.gunicorn_probe import get, serving

APP = """
import gc

LOADED = [{"n": i} for i in range(5000)]  # what the master loaded (preload_app)


def application(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [str(gc.get_freeze_count()).encode()]
"""


def test_a_worker_starts_with_the_masters_objects_frozen(tmp_path):
    with serving(tmp_path, APP) as port:
        status, body = get(port, "/")
    assert status == 200
    assert int(body) > 5000, (tmp_path / "gunicorn.log").read_text()
