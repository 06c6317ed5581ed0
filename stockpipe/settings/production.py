"""Production settings: secure by default, passes ``manage.py check --deploy``."""

from django.core.exceptions import ImproperlyConfigured

from . import *  # noqa: F403
from . import REDIS_URL, _cache, env

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
