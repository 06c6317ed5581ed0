"""Webhook subscriptions and delivery.

Delivery works on streams: the outbox rows of one (subscription, ``product:<id>``) pair,
sent in id order. A stream's oldest pending row is claimed with a lease (a conditional
UPDATE, so two workers never send it at once) and POSTed; on success the next row
follows, on a retryable failure (network error, 5xx, 429) the stream stops until the
row's backoff has passed. Later events of a product therefore never overtake an earlier
one. A row that is dead-lettered (a 4xx answer, or ``STOCKPIPE_WEBHOOK_MAX_ATTEMPTS``
failures) no longer blocks its stream; it can be redelivered by hand.

Tasks only trigger work; the rows are the truth. ``enqueue_due_deliveries`` (run by the
``deliver_pending`` command) re-enqueues streams whose trigger was lost.
"""

from __future__ import annotations

import http.client
import ipaddress
import json
import logging
import secrets
import socket
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from ..models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from ..services.alerts import backoff
from .signing import sign

logger = logging.getLogger(__name__)

CHUNK = 1000
USER_AGENT = "stockpipe-webhooks/1"
Status = WebhookDelivery.Status


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def max_attempts() -> int:
    return int(_setting("STOCKPIPE_WEBHOOK_MAX_ATTEMPTS", 12))


# --- subscriptions ------------------------------------------------------------------------


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def create_subscription(
    *,
    url: str,
    events: Sequence[str],
    secret: str | None = None,
    name: str = "",
    is_active: bool = True,
) -> WebhookSubscription:
    """Create a subscription; a secret is generated unless given. Show it to the user once."""
    subscription = WebhookSubscription(
        url=url,
        events=list(dict.fromkeys(events)),
        secret=secret or new_secret(),
        name=name,
        is_active=is_active,
    )
    subscription.full_clean()
    subscription.save()
    return subscription


def update_subscription(subscription: WebhookSubscription, **changes: Any) -> WebhookSubscription:
    for name, value in changes.items():
        if name == "events":
            value = list(dict.fromkeys(value))
        setattr(subscription, name, value)
    subscription.full_clean()
    subscription.save()
    if changes.get("is_active"):  # reactivated: send what waited meanwhile
        streams = pending_streams(subscription_id=subscription.pk)
        transaction.on_commit(lambda: enqueue_streams(streams), robust=True)
    return subscription


# --- enqueueing -----------------------------------------------------------------------------


def enqueue_streams(streams: Iterable[Sequence[Any]], run_after: datetime | None = None) -> int:
    """Enqueue delivery of ``(subscription_id, stream)`` pairs, one task per chunk."""
    from ..tasks import deliver_webhooks

    task = deliver_webhooks.using(run_after=run_after) if run_after else deliver_webhooks
    pairs = [[int(sub), str(stream)] for sub, stream in streams]
    for start in range(0, len(pairs), CHUNK):
        task.enqueue(pairs[start : start + CHUNK])
    return len(pairs)


def _due(now: datetime) -> Q:
    return Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now)


def pending_streams(
    *, subscription_id: int | None = None, now: datetime | None = None
) -> list[tuple[int, str]]:
    rows = WebhookDelivery.objects.filter(status=Status.PENDING, subscription__is_active=True)
    if subscription_id is not None:
        rows = rows.filter(subscription_id=subscription_id)
    if now is not None:
        rows = rows.filter(_due(now))
    return list(rows.order_by().values_list("subscription_id", "stream").distinct())


def enqueue_due_deliveries(now: datetime | None = None) -> int:
    """Re-enqueue every stream with a due pending row: the safety net for lost enqueues."""
    return enqueue_streams(pending_streams(now=now or timezone.now()))


def redeliver(delivery_ids: Sequence[int]) -> int:
    """Queue dead-lettered (or delivered) rows again, with a fresh attempt count."""
    rows = WebhookDelivery.objects.filter(pk__in=list(delivery_ids)).exclude(status=Status.PENDING)
    streams = list(rows.order_by().values_list("subscription_id", "stream").distinct())
    count = rows.update(status=Status.PENDING, attempts=0, next_attempt_at=None)
    transaction.on_commit(lambda: enqueue_streams(streams), robust=True)
    return count


# --- delivery -------------------------------------------------------------------------------


def event_body(delivery: WebhookDelivery) -> bytes:
    """The exact JSON bytes sent (and signed); the same on every attempt of the event."""
    payload = {
        "id": str(delivery.event_id),
        "type": delivery.event_type,
        "created_at": delivery.created_at.isoformat(),
        "data": delivery.data,
    }
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def deliver_streams(streams: Iterable[Sequence[Any]]) -> dict[str, int]:
    outcome: Counter[str] = Counter()
    for subscription_id, stream in streams:
        outcome.update(deliver_stream(int(subscription_id), str(stream)))
    return dict(outcome)


def deliver_stream(subscription_id: int, stream: str) -> Counter[str]:
    """Send the stream's pending rows in order until one fails or is not due yet."""
    outcome: Counter[str] = Counter()
    rows = WebhookDelivery.objects.filter(subscription_id=subscription_id, stream=stream)
    subscription = WebhookSubscription.objects.filter(pk=subscription_id).first()
    if subscription is None:  # deleted while a writer still had it cached: orphans
        outcome["dropped"] += rows.delete()[1].get(WebhookDelivery._meta.label, 0)
        return outcome
    if not subscription.is_active:
        outcome["inactive"] += 1
        return outcome
    while True:
        head = rows.filter(status=Status.PENDING).order_by("pk").first()
        if head is None:
            break
        now = timezone.now()
        if head.next_attempt_at is not None and head.next_attempt_at > now:
            outcome["waiting"] += 1
            break
        lease = timedelta(seconds=_setting("STOCKPIPE_DELIVERY_LEASE", 300.0))
        claimed = (
            WebhookDelivery.objects.filter(pk=head.pk, status=Status.PENDING)
            .filter(_due(now))
            .update(next_attempt_at=now + lease, attempts=F("attempts") + 1)
        )
        if not claimed:  # another worker holds this stream's head
            outcome["skipped"] += 1
            break
        head.attempts += 1
        result = attempt(head, subscription)
        outcome[result] += 1
        if result == "retry":
            break
    return outcome


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new target: the signed POST is never re-sent elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class BlockedDestination(ValueError):
    """The webhook URL leads to an address webhooks may not reach (dead-lettered at once)."""


def check_peer(sock: socket.socket) -> None:
    """Refuse a connection to a non-public address (loopback, private, link-local, ...).

    Checked on the connected socket, not on a DNS answer, so a name that resolves to a
    public address when checked and to an internal one when connecting (DNS rebinding)
    is still refused. ``STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` lifts the rule, for
    receivers inside your own network.
    """
    if _setting("STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS", False):
        return
    address = ipaddress.ip_address(sock.getpeername()[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if not address.is_global:
        raise BlockedDestination(
            f"refused to connect to {address}: not a public address "
            "(set STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow it)"
        )


class _CheckedConnection(http.client.HTTPConnection):
    def connect(self) -> None:
        super().connect()
        try:
            check_peer(self.sock)
        except BlockedDestination:
            self.close()
            raise


class _CheckedHTTPSConnection(http.client.HTTPSConnection, _CheckedConnection):
    """TLS starts only after ``_CheckedConnection.connect`` accepted the peer."""


class _CheckedHTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_CheckedConnection, req, **kwargs)


class _CheckedHTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_CheckedHTTPSConnection, req, **kwargs)


_opener = urllib.request.build_opener(_NoRedirects, _CheckedHTTPHandler, _CheckedHTTPSHandler)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, float]:
    """POST ``body``; return (status code, first 2000 characters of the answer, the
    answer's Retry-After in seconds or 0).

    Raises ``OSError`` / ``http.client.HTTPException`` on network errors.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise ValueError(f"Not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    timeout = float(_setting("STOCKPIPE_WEBHOOK_TIMEOUT", 10.0))
    try:
        with _opener.open(request, timeout=timeout) as response:
            return response.status, response.read(2000).decode("utf-8", "replace"), 0.0
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(2000).decode("utf-8", "replace") if exc.fp else ""
        retry_after = (exc.headers.get("Retry-After") or "").strip() if exc.headers else ""
        return exc.code, text, float(retry_after) if retry_after.isdigit() else 0.0


def attempt(delivery: WebhookDelivery, subscription: WebhookSubscription) -> str:
    """One signed POST of a claimed row; record it and return delivered/retry/dead."""
    body = event_body(delivery)
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Stockpipe-Event": delivery.event_type,
        "X-Stockpipe-Event-Id": str(delivery.event_id),
        "X-Stockpipe-Delivery": str(delivery.pk),
        "X-Stockpipe-Timestamp": timestamp,
        "X-Stockpipe-Signature": sign(subscription.secret, timestamp, body),
    }
    started = time.monotonic()
    attempted_at = timezone.now()
    code: int | None = None
    text = error = ""
    retry_after = 0.0
    blocked = False
    try:
        code, text, retry_after = post(subscription.url, body, headers)
    except (OSError, http.client.HTTPException, ValueError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:2000]
        # Not an OSError, so urllib passes it through unwrapped; not worth a retry.
        blocked = isinstance(exc, BlockedDestination)
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts,
        attempted_at=attempted_at,
        status_code=code,
        error=error,
        response_body=text,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    rows = WebhookDelivery.objects.filter(pk=delivery.pk)
    if code is not None and 200 <= code < 300:
        rows.update(
            status=Status.DELIVERED,
            delivered_at=timezone.now(),
            last_status_code=code,
            last_error="",
            next_attempt_at=None,
        )
        return "delivered"
    if code is not None:
        error = f"HTTP {code}"
        retryable = code == 429 or code >= 500
    else:
        retryable = not blocked
    if not retryable or delivery.attempts >= max_attempts():
        rows.update(
            status=Status.DEAD, last_status_code=code, last_error=error, next_attempt_at=None
        )
        logger.error(
            "Webhook delivery %s (%s) dead after %s attempt(s): %s",
            delivery.pk,
            delivery.event_type,
            delivery.attempts,
            error,
        )
        return "dead"
    # A 429's Retry-After is honoured up to the backoff ceiling.
    ceiling = float(_setting("STOCKPIPE_DELIVERY_BACKOFF_MAX", 3600.0))
    delay = max(backoff(delivery.attempts), timedelta(seconds=min(retry_after, ceiling)))
    retry_at = timezone.now() + delay
    rows.update(last_status_code=code, last_error=error, next_attempt_at=retry_at)
    logger.warning(
        "Webhook delivery %s attempt %s failed (%s); retry at %s",
        delivery.pk,
        delivery.attempts,
        error,
        retry_at,
    )
    try:
        enqueue_streams([(delivery.subscription_id, delivery.stream)], run_after=retry_at)
    except Exception:  # the sweeper will find the pending row
        logger.exception("Could not enqueue retry of webhook delivery %s", delivery.pk)
    return "retry"
