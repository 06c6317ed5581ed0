"""Every process freezes what Django's start-up loaded (``InventoryConfig.ready``): a
worker's full garbage collections, triggered by the objects a large import makes, then
walk only what the process made since, not the whole loaded application (a 100,000-row
supplier import paid 50-90 ms for one). The collector still collects what comes after.
Checked in a fresh interpreter under the production settings, as a worker starts."""

from __future__ import annotations

import json

from tests.conftest import redis_test_url
from tests.production import run_with_production_settings

PROBE = """
import gc, json
import django

django.setup()
frozen, tracked = gc.get_freeze_count(), len(gc.get_objects())
cycle = []
cycle.append(cycle)
del cycle
print(json.dumps({"frozen": frozen, "tracked": tracked, "collected": gc.collect()}))
"""


def test_a_process_starts_with_what_start_up_loaded_frozen():
    done = run_with_production_settings(
        PROBE, ALLOWED_HOSTS="testserver", REDIS_URL=redis_test_url("production_settings")
    )
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["frozen"] > 20_000, found  # Django and the app: about 76,000 objects
    assert found["tracked"] < found["frozen"] / 10, found
    assert found["collected"] >= 1, found  # what comes later is still collected
