"""Test settings: development settings with fast hashing and in-memory e-mail.

The database comes from DATABASE_URL (default: a SQLite file), so the same suite runs on
SQLite and PostgreSQL. SQLite tests use a file, not memory, so worker processes started by
the reliability tests see the same database.
"""

from . import *  # noqa: F403
from . import BASE_DIR, DATABASES, _database, env

if not env.str("DATABASE_URL", default=""):
    DATABASES["default"] = _database(f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["TEST"] = {"NAME": f"{DATABASES['default']['NAME']}.test"}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STOCKPIPE_DELIVERY_BACKOFF_BASE = 0.0
STOCKPIPE_DELIVERY_BACKOFF_MAX = 0.0
DEBUG = False
# The tests' webhook receivers listen on 127.0.0.1; tests of the block turn this off.
STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
# Test-only app: the plain Django twin of Product and proxies, for tests/conformance.
INSTALLED_APPS = [*INSTALLED_APPS, "tests.conformance.plainapp.apps.PlainAppConfig"]  # noqa: F405
