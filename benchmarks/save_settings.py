"""Development settings plus the plain Django twin of ``Product`` (benchmarks/save.py's anchor)."""

from stockpipe.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.conformance.plainapp.apps.PlainAppConfig"]  # noqa: F405
