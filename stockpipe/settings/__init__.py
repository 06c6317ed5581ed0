"""Settings for stockpipe, read from the environment (12-factor).

Development defaults: SQLite file, console e-mail, DEBUG on. Production lives in
``stockpipe.settings.production``, which refuses to start without a real secret key.
"""

from pathlib import Path

import environ

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
    "app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # 413 for bodies over DATA_UPLOAD_MAX_MEMORY_SIZE, 400 for NUL/control characters in the
    # path or query and JSON nested deeper than app.core.inputs.MAX_JSON_DEPTH.
    "app.middleware.InputGuardMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "app.middleware.ChangeContextMiddleware",
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


def _database(url: str) -> dict:
    config = environ.Env.db_url_config(url)
    if config["ENGINE"] == "django.db.backends.sqlite3":
        # IMMEDIATE takes the write lock at BEGIN, so read-then-write transactions never
        # fail half-way with "database is locked"; WAL lets readers run beside a writer.
        config.setdefault("OPTIONS", {}).update(
            {
                "transaction_mode": "IMMEDIATE",
                "timeout": 30,
                "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
            }
        )
    else:
        config["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=60)
        config["CONN_HEALTH_CHECKS"] = True
    return config


DATABASES = {
    "default": _database(env.str("DATABASE_URL", default=f"sqlite:///{BASE_DIR / 'db.sqlite3'}"))
}
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
# API response and token caches (app.services.cache_guard): unset = on exactly when the
# cache is shared between processes (Redis, Memcached); true/false forces it.
STOCKPIPE_API_CACHE = env.bool("STOCKPIPE_API_CACHE", default=None)
TASKS_BACKEND = env.str("TASKS_BACKEND", default="database")
if TASKS_BACKEND == "rq":
    INSTALLED_APPS.append("django_rq")
    RQ_QUEUES = {"default": {"URL": REDIS_URL, "DEFAULT_TIMEOUT": 3600}}
    TASKS = {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}}
else:
    TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend", "QUEUES": ["default"]}}

# Domain settings
# Webhooks may only reach public addresses unless this is set (receivers on your own network).
STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = env.bool(
    "STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS", default=False
)
STOCKPIPE_MANAGER_EMAIL = env.str("STOCKPIPE_MANAGER_EMAIL", default="manager@company.com")
STOCKPIPE_LOW_STOCK_THRESHOLD = env.int("STOCKPIPE_LOW_STOCK_THRESHOLD", default=5)
# Alert delivery retries: delay = min(BASE * 2**(attempt-1), MAX) seconds, up to MAX_ATTEMPTS.
STOCKPIPE_DELIVERY_BACKOFF_BASE = env.float("STOCKPIPE_DELIVERY_BACKOFF_BASE", default=30.0)
STOCKPIPE_DELIVERY_BACKOFF_MAX = env.float("STOCKPIPE_DELIVERY_BACKOFF_MAX", default=3600.0)
STOCKPIPE_DELIVERY_MAX_ATTEMPTS = env.int("STOCKPIPE_DELIVERY_MAX_ATTEMPTS", default=25)
# How long a worker may hold a claimed alert before another may retry it (crash recovery).
STOCKPIPE_DELIVERY_LEASE = env.float("STOCKPIPE_DELIVERY_LEASE", default=300.0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "app": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    },
}
