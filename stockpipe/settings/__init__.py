"""Settings for stockpipe, read from the environment (12-factor).

Development defaults: SQLite file, console e-mail, DEBUG on. Production lives in
``stockpipe.settings.production``, which refuses to start without a real secret key.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp.constants import NONE, SELF

from app.conf import environment_settings

BASE_DIR = Path(__file__).resolve().parent.parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=True)
SECRET_KEY = env.str(
    "SECRET_KEY", default="dev-only-insecure-key-change-me-in-production-0123456789"
)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_tasks",
    "django_tasks_db",
    "axes",
    "csp",
    "ninja",  # serves /api/docs (Swagger UI) from the project's static files, not a CDN
    "app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    # django-csp's, with the site's policy built once.
    "app.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # 413 for bodies over DATA_UPLOAD_MAX_MEMORY_SIZE, 400 for NUL/control characters in the
    # path or query and JSON nested deeper than app.core.inputs.MAX_JSON_DEPTH.
    "app.middleware.InputGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    # Reads of pages and API lists on the read replica (DATABASE_REPLICA_URL), if any.
    "app.middleware.ReplicaRoutingMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "app.middleware.ChangeContextMiddleware",
    # Last, as django-axes requires: turns a locked-out login into the lockout response.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "stockpipe.urls"
WSGI_APPLICATION = "stockpipe.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]


SQLITE_CACHE_KIB = 65_536


def _database(url: str) -> dict:
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes the write lock at BEGIN, so read-then-write transactions never
        # fail half-way with "database is locked"; WAL lets readers run beside a writer.
        config.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                # A page cache of 64 MiB, not 2: a large UPDATE rewrites entries all over
                # the product indexes, and with 2 MiB it re-read and spilled their pages
                # (a 1,000,000-row upsert's product UPDATE: 13.8 s -> 8.7 s). The cache
                # grows only as pages are read, per connection.
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                f"PRAGMA cache_size=-{SQLITE_CACHE_KIB};",
            }
        )
    else:
        config["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        config["CONN_HEALTH_CHECKS"] = True
        if config["ENGINE"] == "django.db.backends.postgresql":
            # The same backend, with a health check that needs no round trip while the
            # server has sent nothing (stockpipe/db/base.py).
            config["ENGINE"] = "stockpipe.db"
        # Behind PgBouncer in transaction pooling mode, consecutive transactions of one
        # connection may run on different server connections: a server-side cursor (which
        # QuerySet.iterator() declares WITH HOLD outside a transaction) would be lost.
        config["DISABLE_SERVER_SIDE_CURSORS"] = env.bool(
            "DATABASE_TRANSACTION_POOLING", default=False
        )
    return config


DATABASES = {
    "default": _database(env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))
}
# The history indexes' INCLUDE columns (migration 0014) serve PostgreSQL's index-only scans;
# SQLite builds the same indexes on their keys, which is all it needs: no warning for that.
SILENCED_SYSTEM_CHECKS = ["models.W040"]


def _replica(config: dict) -> dict:
    """The read replica's alias: a PostgreSQL hot standby of ``default`` (README, Read
    replicas). Tests use the primary's test database under this alias (a mirror)."""
    if config["ENGINE"] != "django.db.backends.sqlite3":
        # Unreachable must mean "fall back to the primary" within seconds, not minutes.
        config.setdefault("OPTIONS", {}).setdefault("connect_timeout", 3)
    config["TEST"] = {"MIRROR": "default"}
    return config


if env.str("DATABASE_REPLICA_URL", default=""):
    DATABASES["replica"] = _replica(_database(env.str("DATABASE_REPLICA_URL")))
# Sends reads to "replica" where app.selectors.replica allows it; the primary otherwise.
DATABASE_ROUTERS = ["app.core.dbrouter.ReplicaRouter"]
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}

LOGIN_URL = "/accounts/login/"

# Content-Security-Policy (django-csp): scripts, styles, images and requests from this origin
# only, no inline script or style (the pages have none; /api/docs serves Swagger UI from
# the static files), no plugins, no framing, forms post here only.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": [SELF],
        "script-src": [SELF],
        "style-src": [SELF],
        "img-src": [SELF, "data:"],
        "font-src": [SELF],
        "connect-src": [SELF],
        "object-src": [NONE],
        "base-uri": [SELF],
        "form-action": [SELF],
        "frame-ancestors": [NONE],
    }
}

# stockpipe's own settings (STOCKPIPE_*): each with its default and environment variable,
# listed once in app/conf.py.
OWN = environment_settings(env)
vars().update(OWN)

# Brute-force protection of every login form and the API login (app.services.login_lockout):
# an account locks after AXES_FAILURE_LIMIT failures from anywhere, an address after
# STOCKPIPE_LOGIN_ADDRESS_FAILURE_LIMIT failures over any accounts; both unlock after
# AXES_COOLOFF_TIME without failures, and a successful login clears its account's failures.
AUTHENTICATION_BACKENDS = [
    "app.services.login_lockout.LockoutBackend",
    # Answers has_perm from the shared cache when it can (app.services.permissions);
    # ModelBackend, next, answers everything else as before.
    "app.services.permissions.CachedPermissionBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AXES_HANDLER = "app.services.login_lockout.LoginLockoutHandler"
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_FAILURE_LIMIT = OWN["STOCKPIPE_LOGIN_ACCOUNT_FAILURE_LIMIT"]
AXES_COOLOFF_TIME = timedelta(minutes=OWN["STOCKPIPE_LOGIN_COOLOFF_MINUTES"])
AXES_RESET_ON_SUCCESS = True
AXES_CLIENT_IP_CALLABLE = "app.services.login_lockout.client_address"
AXES_LOCKOUT_CALLABLE = "app.web.lockout.lockout_response"
AXES_VERBOSE = False

# E-mail: EMAIL_URL such as smtp://user:pass@host:25, smtp+tls://..., consolemail://, filemail:///path
vars().update(env.email_url("EMAIL_URL", default="consolemail://"))
EMAIL_TIMEOUT = env.int("EMAIL_TIMEOUT", default=10)
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="stockpipe@localhost")

# Background tasks: durable database backend by default; TASKS_BACKEND=rq for Redis/RQ.
REDIS_URL = env.str("REDIS_URL", default="redis://127.0.0.1:6379/0")

# Cache (throttling counters live here): per-process memory in development; production
# settings default to Redis so limits hold across processes and machines.
CACHES = {"default": env.cache_url("CACHE_URL", default="locmemcache://")}


def _cache(config: dict) -> dict:
    """Django's Redis backend, but reusing its client (see ``stockpipe.cache``)."""
    if config["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
        config["BACKEND"] = "stockpipe.cache.RedisCache"
    return config


CACHES["default"] = _cache(CACHES["default"])
TASKS_BACKEND = env.str("TASKS_BACKEND", default="database")
if TASKS_BACKEND == "rq":
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600}}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "app": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    },
}
