"""Production settings: secure by default, passes ``manage.py check --deploy``."""

from django.core.exceptions import ImproperlyConfigured

from . import *  # noqa: F403
from . import BASE_DIR, MIDDLEWARE, OWN, REDIS_URL, _cache, env

DEBUG = False
SECRET_KEY = env.str("SECRET_KEY", default="")
if len(SECRET_KEY) < 50 or SECRET_KEY.startswith("dev-only"):
    raise ImproperlyConfigured("Set SECRET_KEY to a random string of at least 50 characters.")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS")

# The shared cache (throttles, API response and token caches): CACHE_URL, else REDIS_URL
# exactly as given, database number included. With TASKS_BACKEND=rq on the same server,
# give the cache another database number in CACHE_URL (README, Configuration).
CACHES = {"default": _cache(env.cache_url("CACHE_URL", default=REDIS_URL))}

SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = True
SECURE_HSTS_PRELOAD = True
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

# Built by `manage.py collectstatic` (deploy/run does it before starting); without the
# manifest every page that links a static file answers 500.
STATIC_ROOT = env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles"))

# Behind nginx (deploy/nginx.conf.template), which overwrites X-Forwarded-For with the
# client's address: the API's throttles take the client from that one proxy hop.
NINJA_NUM_PROXIES = OWN["STOCKPIPE_NUM_PROXIES"]

# Every request gets an id (nginx's $request_id), returned as X-Request-ID and logged.
MIDDLEWARE = ["app.middleware.RequestIdMiddleware", *MIDDLEWARE]

# Errors to stderr (gunicorn and the workers pass it on to the service's log), each record
# with the request's path and id: 500s of pages and of the API are logged with traceback.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "app.request_id.RequestIdFilter"}},
    "formatters": {
        "request": {
            "format": "%(asctime)s %(levelname)s %(name)s "
            "path=%(request_path)s request_id=%(request_id)s %(message)s"
        }
    },
    "handlers": {
        "stderr": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "filters": ["request_id"],
            "formatter": "request",
        }
    },
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        "django.security": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        # Requests for other host names (scanners) are answered 400; not worth a log line.
        "django.security.DisallowedHost": {"handlers": [], "propagate": False},
        "app": {
            "handlers": ["stderr"],
            "level": env.str("LOG_LEVEL", default="INFO"),
            "propagate": False,
        },
    },
}
