"""Webhook subscriptions (secrets, rotation, disabling) and delivery.

Delivery works on streams: the outbox rows of one (subscription, ``product:<id>``) pair,
sent in id order. A stream's oldest pending row is claimed with a lease (a conditional
UPDATE, so two workers never send it at once) and POSTed; on success the next row
follows, on a retryable failure (network error, 5xx, 429) the stream stops until the
row's backoff (or the receiver's ``Retry-After`` on 429/503) has passed. Later events of a
product therefore never overtake an earlier one. A row that is dead-lettered (a 4xx answer,
or ``STOCKPIPE_WEBHOOK_MAX_ATTEMPTS`` failures) no longer blocks its stream; it can be
redelivered by hand. ``410 Gone`` disables the whole subscription (Standard Webhooks): the
row stays pending (parked) and its stream resumes from it when the subscription is enabled.

Tasks only trigger work; the rows are the truth. ``enqueue_due_deliveries`` (run by the
``deliver_pending`` command) re-enqueues streams whose trigger was lost.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.utils import timezone

from .. import conf
from ..core import jobs
from ..core.context import current_change_context
from ..core.domain import webhook_secret_problem
from ..models import WebhookAttempt, WebhookDelivery, WebhookSubscription
from ..services import delivery
from .signing import new_standard_secret, sign, standard_key, standard_signature_header
from .transport import BlockedDestination, post

logger = logging.getLogger(__name__)

CHUNK = 1000
USER_AGENT = "stockpipe-webhooks/1"
Status = WebhookDelivery.Status
GONE = 410
RETRY_AFTER_CODES = (429, 503)  # the answers whose Retry-After is honoured
DISABLED = "disabled"  # outcome of an attempt answered 410 Gone


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
    """A fresh secret in the Standard Webhooks form (``whsec_`` + base64 of 32 random bytes)."""
    return new_standard_secret()


def _checked_secret(secret: str) -> str:
    message = webhook_secret_problem(secret)
    if message:
        raise ValidationError({"secret": message})
    return secret


def create_subscription(
    *,
    url: str,
    events: Sequence[str],
    secret: str | None = None,
    name: str = "",
    is_active: bool = True,
) -> WebhookSubscription:
    """Create a subscription; a secret is generated unless given (it must then be in the
    standard form). Show it to the user once."""
    subscription = WebhookSubscription(
        url=url,
        events=list(dict.fromkeys(events)),
        secret=_checked_secret(secret) if secret is not None else new_secret(),
        name=name,
        is_active=is_active,
    )
    if not is_active:
        subscription.disabled_at, subscription.disabled_reason = timezone.now(), _by_hand()
    subscription.full_clean()
    subscription.save()
    return subscription


def update_subscription(subscription: WebhookSubscription, **changes: Any) -> WebhookSubscription:
    """Change fields; ``secret`` rotates (``rotate_secret``), ``is_active`` records or clears
    when and why the subscription was deactivated."""
    secret = changes.pop("secret", None)
    was_active = subscription.is_active
    for name, value in changes.items():
        if name == "events":
            value = list(dict.fromkeys(value))
        setattr(subscription, name, value)
    if "is_active" in changes and subscription.is_active != was_active:
        if subscription.is_active:
            subscription.disabled_at, subscription.disabled_reason = None, ""
        else:
            subscription.disabled_at, subscription.disabled_reason = timezone.now(), _by_hand()
    subscription.full_clean()
    fields = [*changes, "disabled_at", "disabled_reason", "updated_at"]
    with transaction.atomic():
        subscription.save(update_fields=fields)  # not the secrets: a rotation may be racing
        if secret is not None:
            rotate_secret(subscription, secret)
    if changes.get("is_active"):  # reactivated: send what waited meanwhile
        streams = pending_streams(subscription_id=subscription.pk)
        transaction.on_commit(lambda: enqueue_streams(streams), robust=True)
    return subscription


def enable_subscription(subscription: WebhookSubscription) -> WebhookSubscription:
    """Activate a subscription again (after a 410 Gone, or by hand): its parked and pending
    deliveries are sent, oldest first."""
    return update_subscription(subscription, is_active=True)


def _by_hand() -> str:
    ctx = current_change_context()
    who = f", user {ctx.user_id}" if ctx.user_id else ""
    return f"Deactivated by hand ({ctx.source}{who})."


def rotate_secret(
    subscription: WebhookSubscription, secret: str | None = None
) -> WebhookSubscription:
    """Give the subscription a new secret (generated unless given, standard form).

    The current secret becomes the previous one: ``webhook-signature`` carries a signature
    with each until ``STOCKPIPE_WEBHOOK_SECRET_OVERLAP`` seconds have passed (0: none), so
    receivers switch over without a failed delivery. A previous secret of an earlier
    rotation is dropped. ``X-Stockpipe-Signature`` holds one signature and switches to the
    new secret at once; ``legacy_secret`` (migration 0006) is cleared.
    """
    secret = _checked_secret(secret) if secret is not None else new_secret()
    now = timezone.now()
    with transaction.atomic():
        current = WebhookSubscription.objects.select_for_update().get(pk=subscription.pk)
        if secret == current.secret:
            raise ValidationError({"secret": "secret must differ from the current secret"})
        overlap = conf.webhook_secret_overlap()
        keep = overlap > 0
        values = {
            "previous_secret": current.secret if keep else "",
            "previous_secret_expires_at": now + timedelta(seconds=overlap) if keep else None,
            "secret": secret,
            "legacy_secret": "",
            "secret_rotated_at": now,
            "updated_at": now,
        }
        WebhookSubscription.objects.filter(pk=subscription.pk).update(**values)
    for name, value in values.items():
        setattr(subscription, name, value)
    logger.info("Webhook subscription %s: secret rotated", subscription.pk)
    return subscription


def signing_keys(subscription: WebhookSubscription, now: datetime | None = None) -> list[bytes]:
    """The Standard Webhooks keys that sign a delivery now: the secret's, then the previous
    secret's while its overlap lasts."""
    now = now or timezone.now()
    keys = [standard_key(subscription.secret)]
    expires = subscription.previous_secret_expires_at
    if subscription.previous_secret and expires is not None and now < expires:
        keys.append(standard_key(subscription.previous_secret))
    return keys


def disable_for_gone(subscription_id: int, delivery_pk: int) -> None:
    """The receiver answered ``410 Gone``: deactivate the subscription, saying when and why."""
    now = timezone.now()
    reason = f"The receiver answered 410 Gone to delivery {delivery_pk} at {now.isoformat()}."
    with transaction.atomic():
        rows = WebhookSubscription.objects.select_for_update().filter(pk=subscription_id)
        subscription = rows.filter(is_active=True).first()
        if subscription is None:  # deleted or deactivated meanwhile
            return
        subscription.is_active = False
        subscription.disabled_at, subscription.disabled_reason = now, reason
        # save(), not update(): writers forget their cached subscription set (post_save)
        subscription.save(
            update_fields=["is_active", "disabled_at", "disabled_reason", "updated_at"]
        )
    logger.warning("Webhook subscription %s disabled: %s", subscription_id, reason)


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
    while True:
        # Read again before each row: a rotation, or a 410 Gone answered to another stream,
        # applies from the next request on.
        subscription = WebhookSubscription.objects.filter(pk=subscription_id).first()
        if subscription is None:  # deleted while a writer still had it cached: orphans
            outcome["dropped"] += rows.delete()[1].get(WebhookDelivery._meta.label, 0)
            return outcome
        if not subscription.is_active:
            outcome["inactive"] += 1
            return outcome
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
        if result in (delivery.RETRY, DISABLED):
            break
    return outcome


def attempt(pk: int, number: int, subscription: WebhookSubscription, stream: str) -> str:
    """Attempt ``number`` of the claimed row ``pk``: one signed POST, recorded.

    Whatever fails, loading the event, building or sending it, is recorded as a failed
    attempt of this row and never stops other streams. Returns delivered/retry/dead, or
    disabled after a ``410 Gone`` (the row is parked, the subscription deactivated).
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
    if code == GONE:
        with transaction.atomic():
            disable_for_gone(subscription.pk, pk)
            delivery.park(WEBHOOKS, pk, "HTTP 410: subscription disabled", last_status_code=code)
        return DISABLED
    if code is not None:
        error = f"HTTP {code}"
        permanent = not (code == 429 or code >= 500)
    outcome, retry_at = delivery.record_failure(
        WEBHOOKS,
        pk,
        number,
        error,
        permanent=permanent,
        # Retry-After of a 429 or 503: the later of it and the backoff, at most the ceiling
        not_before=retry_after if code in RETRY_AFTER_CODES else 0.0,
        last_status_code=code,
    )
    if retry_at is not None:
        try:
            enqueue_streams([(subscription.pk, stream)], run_after=retry_at)
        except Exception:  # the sweeper will find the pending row
            logger.exception("Could not enqueue retry of webhook delivery %s", pk)
    return outcome


def request_headers(
    row: WebhookDelivery,
    subscription: WebhookSubscription,
    body: bytes,
    now: float | None = None,
) -> dict[str, str]:
    """The request headers of one attempt; the signatures cover a fresh timestamp.

    ``webhook-*`` are the Standard Webhooks headers (``webhook-id`` is the event id, the
    same on every attempt, the receivers' idempotency key); ``X-Stockpipe-*`` are the
    original ones, signed with ``legacy_secret`` while a migrated subscription has one.
    """
    now = time.time() if now is None else now
    timestamp = str(int(now))
    event_id = str(row.event_id)
    keys = signing_keys(subscription, datetime.fromtimestamp(now, tz=UTC))
    return {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": event_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": standard_signature_header(keys, event_id, timestamp, body),
        "X-Stockpipe-Event": row.event_type,
        "X-Stockpipe-Event-Id": event_id,
        "X-Stockpipe-Delivery": str(row.pk),
        "X-Stockpipe-Timestamp": timestamp,
        "X-Stockpipe-Signature": sign(
            subscription.legacy_secret or subscription.secret, timestamp, body
        ),
    }
