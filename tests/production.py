"""Run Python code under the real production settings, in a fresh interpreter (they are read
once, from the environment), and return the finished process."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECRET = "production-probe-" + "k" * 50


def run_with_production_settings(code: str, **env: str) -> subprocess.CompletedProcess:
    """``code`` under ``stockpipe.settings.production`` with a valid secret; ``env`` adds or
    replaces variables (the caller's CACHE_URL, REDIS_URL and settings module are dropped)."""
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CACHE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    environment.update(
        DJANGO_SETTINGS_MODULE="stockpipe.settings.production",
        SECRET_KEY=SECRET,
        PYTHONPATH=str(ROOT),
        **env,
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done
