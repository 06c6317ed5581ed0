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

import json
import logging
import secrets
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from ..core import jobs
from ..models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from ..services import delivery
from .signing import sign
from .transport import BlockedDestination, post

logger = logging.getLogger(__name__)

CHUNK = 1000
USER_AGENT = "stockpipe-webhooks/1"
Status = WebhookDelivery.Status


WEBHOOKS = delivery.Track(
    model=WebhookDelivery,
    label="Webhook delivery",
    status="status",
    done_at="delivered_at",
    pending=Status.PENDING.value,
    done=Status.DELIVERED.value,
    given_up=Status.DEAD.value,
    max_attempts_setting="STOCKPIPE_WEBHOOK_MAX_ATTEMPTS",
)


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
    deliver = jobs.task("deliver_webhooks")
    task = deliver.using(run_after=run_after) if run_after else deliver
    pairs = [[int(sub), str(stream)] for sub, stream in streams]
    for start in range(0, len(pairs), CHUNK):
        task.enqueue(pairs[start : start + CHUNK])
    return len(pairs)


def pending_streams(
    *, subscription_id: int | None = None, now: datetime | None = None
) -> list[tuple[int, str]]:
    rows = WEBHOOKS.pending_rows(now).filter(subscription__is_active=True)
    if subscription_id is not None:
        rows = rows.filter(subscription_id=subscription_id)
    return list(rows.order_by().values_list("subscription_id", "stream").distinct())


def enqueue_due_deliveries(now: datetime | None = None) -> int:
    """Re-enqueue every stream with a due pending row: the safety net for lost enqueues."""
    return enqueue_streams(pending_streams(now=now or timezone.now()))


def redeliver(delivery_ids: Sequence[int]) -> int:
    """Queue dead-lettered (or delivered) rows again, with a fresh attempt count."""
    rows = WebhookDelivery.objects.filter(pk__in=list(delivery_ids)).exclude(status=Status.PENDING)
    streams = list(rows.order_by().values_list("subscription_id", "stream").distinct())
    count = delivery.requeue(WEBHOOKS, rows)
    transaction.on_commit(lambda: enqueue_streams(streams), robust=True)
    return count


# --- delivery -------------------------------------------------------------------------------


def event_body(row: WebhookDelivery) -> bytes:
    """The exact JSON bytes sent (and signed); the same on every attempt of the event."""
    payload = {
        "id": str(row.event_id),
        "type": row.event_type,
        "created_at": row.created_at.isoformat(),
        "data": row.data,
    }
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":")).encode()


def deliver_streams(streams: Iterable[Sequence[Any]]) -> dict[str, int]:
    outcome: Counter[str] = Counter()
    for subscription_id, stream in streams:
        try:
            outcome.update(deliver_stream(int(subscription_id), str(stream)))
        except Exception:  # e.g. the database went away: the sweeper finds the rows again
            logger.exception(
                "Delivery of stream %s of subscription %s stopped", stream, subscription_id
            )
            outcome["error"] += 1
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
        # Only the head's id and due time: reading the event is part of the attempt.
        head = (
            rows.filter(status=Status.PENDING)
            .order_by("pk")
            .values_list("pk", "next_attempt_at")
            .first()
        )
        if head is None:
            break
        pk, next_attempt_at = head
        if next_attempt_at is not None and next_attempt_at > timezone.now():
            outcome["waiting"] += 1
            break
        number = delivery.claim(WEBHOOKS, pk)
        if number is None:  # another worker holds this stream's head
            outcome["skipped"] += 1
            break
        result = attempt(pk, number, subscription, stream)
        outcome[result] += 1
        if result == delivery.RETRY:
            break
    return outcome


def attempt(pk: int, number: int, subscription: WebhookSubscription, stream: str) -> str:
    """Attempt ``number`` of the claimed row ``pk``: one signed POST, recorded.

    Whatever fails, loading the event, building or sending it, is recorded as a failed
    attempt of this row and never stops other streams. Returns delivered/retry/dead.
    """
    started = time.monotonic()
    attempted_at = timezone.now()
    code: int | None = None
    text = error = ""
    retry_after = 0.0
    permanent = False
    try:
        row = WebhookDelivery.objects.get(pk=pk)
        body = event_body(row)
        code, text, retry_after = post(
            subscription.url, body, request_headers(row, subscription, body)
        )
    except BlockedDestination as exc:  # not worth a retry
        error, permanent = delivery.describe(exc), True
    except Exception as exc:  # network errors, and anything unexpected: retried
        error = delivery.describe(exc)
    WebhookAttempt.objects.create(
        delivery_id=pk,
        number=number,
        attempted_at=attempted_at,
        status_code=code,
        error=error,
        response_body=text,
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    if code is not None and 200 <= code < 300:
        return delivery.record_success(WEBHOOKS, pk, last_status_code=code)
    if code is not None:
        error = f"HTTP {code}"
        permanent = not (code == 429 or code >= 500)
    outcome, retry_at = delivery.record_failure(
        WEBHOOKS,
        pk,
        number,
        error,
        permanent=permanent,
        not_before=retry_after,  # a 429's Retry-After, up to the backoff ceiling
        last_status_code=code,
    )
    if retry_at is not None:
        try:
            enqueue_streams([(subscription.pk, stream)], run_after=retry_at)
        except Exception:  # the sweeper will find the pending row
            logger.exception("Could not enqueue retry of webhook delivery %s", pk)
    return outcome


def request_headers(
    row: WebhookDelivery, subscription: WebhookSubscription, body: bytes
) -> dict[str, str]:
    """The request headers of one attempt; the signature covers a fresh timestamp."""
    timestamp = str(int(time.time()))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-Stockpipe-Event": row.event_type,
        "X-Stockpipe-Event-Id": str(row.event_id),
        "X-Stockpipe-Delivery": str(row.pk),
        "X-Stockpipe-Timestamp": timestamp,
        "X-Stockpipe-Signature": sign(subscription.secret, timestamp, body),
    }
