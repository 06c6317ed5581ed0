"""gunicorn loads the application once, in its master, and forks the workers with it
(``preload_app`` in deploy/gunicorn.conf.py). Loading ``stockpipe.wsgi`` must therefore do
what a worker's first request used to (import the URLconf with the whole API, the cache
backend, the session and message backends: about a second of CPU per worker and per
``max_requests`` restart), and must open no connection that ``fork()`` would hand to every
worker. Checked in a fresh interpreter under the production settings."""

from __future__ import annotations

import json

from tests.conftest import redis_test_url
from tests.production import run_with_production_settings

PROBE = """
import json, sys
import stockpipe.wsgi
from django.core.cache import caches
from django.db import connections
from django.test import Client

loaded = set(sys.modules)
opened = [a for a in connections.settings if connections[a].connection is not None]
caches_made = [a for a in caches.settings if getattr(caches._connections, a, None) is not None]
response = Client().get("/api/auth/csrf", secure=True)
print(json.dumps({
    "status": response.status_code,
    "db_connections_at_load": opened,
    "caches_at_load": caches_made,
    "imported_by_first_request": sorted(set(sys.modules) - loaded),
}))
"""


def test_loading_the_wsgi_application_leaves_nothing_to_import_and_opens_nothing():
    done = run_with_production_settings(
        PROBE, ALLOWED_HOSTS="testserver", REDIS_URL=redis_test_url("production_settings")
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["status"] == 200
    assert found["db_connections_at_load"] == []
    assert found["caches_at_load"] == []
    assert found["imported_by_first_request"] == []
