"""gunicorn for deploy/run: sync workers on loopback, behind nginx (deploy/nginx.conf.template).

Sync workers are safe only because nginx hands them complete requests and takes whole
responses; never bind this to a public address.
"""

import gc
import multiprocessing
import os
from datetime import timedelta

from gunicorn import glogging

wsgi_app = "stockpipe.wsgi:application"
# The master loads the application (Django, the URLconf, every API schema: stockpipe/wsgi.py)
# once and forks the workers with it loaded. Otherwise every worker spent about 2.5 s of CPU
# on that, the last second inside its first request, and again on each max_requests restart,
# which on 2 cores under load cost the service a fifth of its requests. A code change
# therefore needs a restart of gunicorn (deploy/run), not a HUP.
preload_app = True


def pre_fork(server, worker) -> None:
    """Freeze what the master has loaded (``gc.freeze()``) before each worker is forked.
    A worker's full garbage collection otherwise walks every object of the loaded
    application (about 130,000: Django, the URLconf, the API schemas) each time it runs,
    once every few hundred requests: 70-180 ms of the request it lands in (measured
    in-process on the 2-core machine; benchmarks/RESULTS-readpaths.md), where a product
    page takes 15-20 ms. Frozen objects are never collected: they live as long as the
    process anyway; the master's garbage is collected first. (``InventoryConfig.ready``
    froze what Django's start-up loaded, in every process; this freezes what the master
    loaded after it.)"""
    gc.collect()
    gc.freeze()


bind = [os.environ.get("STOCKPIPE_GUNICORN_BIND", "127.0.0.1:8000")]
worker_class = "sync"
workers = int(os.environ.get("WEB_CONCURRENCY", multiprocessing.cpu_count() * 2 + 1))
# A request may run this long (a large synchronous pipeline); nginx waits a little longer.
timeout = int(os.environ.get("STOCKPIPE_REQUEST_TIMEOUT", "120"))
graceful_timeout = 30
# Recycle workers now and then, so a slow leak never grows without bound.
max_requests = 2000
max_requests_jitter = 200
# Only nginx on this machine may tell Django the scheme (X-Forwarded-Proto).
forwarded_allow_ips = "127.0.0.1,::1"
# The management socket (gunicornc) of this instance lives in its run directory.
control_socket = os.path.join(os.environ.get("STOCKPIPE_RUN_DIR", "var/run"), "gunicorn.ctl")
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("GUNICORN_LOG_LEVEL", "info")
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}i)s'


class SlowRequestLogger(glogging.Logger):
    """gunicorn's access line only for a request that held its worker SLOW_REQUEST or more.

    nginx logs every request already (deploy/nginx.conf.template: status, its time and the
    upstream's, rid=): a second line per request from gunicorn repeated it, at about 5 % of
    a worker's CPU on a busy API. What only gunicorn can tell is when a slow request let go
    of its worker (before nginx has delivered a buffered response to a slow client)."""

    def access(self, resp, req, environ, request_time):
        if request_time >= SLOW_REQUEST:
            super().access(resp, req, environ, request_time)


# GUNICORN_ACCESS_LOG_MIN_MS=0 logs every request (gunicorn behind no nginx, debugging).
SLOW_REQUEST = timedelta(milliseconds=float(os.environ.get("GUNICORN_ACCESS_LOG_MIN_MS", "1000")))
logger_class = SlowRequestLogger
