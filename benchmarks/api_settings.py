"""Production settings plus the benchmark's URLconf (adds the bare constant-JSON view)."""

from stockpipe.settings.production import *  # noqa: F403

ROOT_URLCONF = "benchmarks.api_urls"
