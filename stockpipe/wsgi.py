"""The WSGI application, loaded whole before it serves its first request.

Django imports the URLconf (the whole API: every Ninja operation builds its pydantic models),
the cache backend, the session engine and the message storage on the first request that
needs them. In a gunicorn worker that is about a second of CPU spent inside the first
request of every worker, and again after every ``max_requests`` restart. ``warm()`` does it
when the application is loaded instead; with ``preload_app`` (``deploy/gunicorn.conf.py``)
that is once, in gunicorn's master, and every worker is forked with it done.

``warm()`` imports code only: it opens no database, cache or other connection, so nothing
is shared across ``fork()``.
"""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "stockpipe.settings")
application = get_wsgi_application()


def warm() -> None:
    """Import what a first request would: the URLconf and the backends named in settings."""
    from django.conf import settings
    from django.urls import get_resolver
    from django.utils.module_loading import import_string

    get_resolver().url_patterns  # noqa: B018 (imports the URLconf and every view it names)
    for cache in settings.CACHES.values():
        import_string(cache["BACKEND"])
    import_string(settings.MESSAGE_STORAGE)
    import_string(f"{settings.SESSION_ENGINE}.SessionStore")
    import_string(settings.SESSION_SERIALIZER)
    "".encode("idna")  # the codec getaddrinfo() loads on the first connection by host name


warm()
