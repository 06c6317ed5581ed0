"""Test settings: development settings with fast hashing and in-memory e-mail.

The database comes from DATABASE_URL (default: a SQLite file), so the same suite runs on
SQLite and PostgreSQL. SQLite tests use a file, not memory, so worker processes started by
the reliability tests see the same database.
"""

import copy

from . import *  # noqa: F403
from . import BASE_DIR, DATABASES, _database, _replica, env

if not env.str("DATABASE_URL", default=""):
    DATABASES["default"] = _database(f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}
# A read replica alias in every test run: a mirror of the test database (a second connection
# to it), so the routing runs wherever tests commit (transactional tests); tests/replica
# runs a real streaming replica.
if "replica" not in DATABASES:
    DATABASES["replica"] = _replica(copy.deepcopy(DATABASES["default"]))

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STOCKPIPE_DELIVERY_BACKOFF_BASE = 0.0
STOCKPIPE_DELIVERY_BACKOFF_MAX = 0.0
DEBUG = False
# The tests' webhook receivers listen on 127.0.0.1; tests of the block turn this off.
STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
# Test-only app: the plain Django twin of Product and proxies, for tests/conformance.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.conformance.plainapp.apps.PlainAppConfig"]  # noqa: F405
