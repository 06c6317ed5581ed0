"""Test settings: same as development, with fast hashing and in-memory e-mail.

The database comes from DATABASE_URL, so the same suite runs on SQLite and PostgreSQL.
"""

from . import *  # noqa: F403
from . import BASE_DIR, env

if not env.str("DATABASE_URL", default=""):
    DATABASES = {"default": _database(f"sqlite:///{BASE_DIR / 'test-db.sqlite3'}")}  # noqa: F405
    DATABASES["default"]["TEST"] = {"NAME": str(BASE_DIR / "test-db.sqlite3")}

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
STOCKPIPE_DELIVERY_BACKOFF_BASE = 0.0
STOCKPIPE_DELIVERY_BACKOFF_MAX = 0.0
DEBUG = False
