"""Outgoing webhooks: subscriptions, the outbox of deliveries, and the log of attempts.

``WebhookDelivery`` is the outbox: one row per (event, subscription), written in the
transaction of the change, so rolled-back work sends nothing and committed work is never
lost. The row is the source of truth for delivery; tasks are only triggers.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from django.core.exceptions import ValidationError
from django.core.serializers.json import DjangoJSONEncoder
from django.core.validators import URLValidator
from django.db import connections, models

from ..core import encoding
from ..core.sqlrows import insert_rows


class WebhookEvent(models.TextChoices):
    PRODUCT_CREATED = "product.created"
    PRODUCT_UPDATED = "product.updated"
    PRODUCT_DELETED = "product.deleted"
    PRICE_CHANGED = "price.changed"
    STOCK_LOW = "stock.low"
    STOCK_RESTORED = "stock.restored"
    STOCK_TRANSFERRED = "stock.transferred"
    RESERVATION_CREATED = "reservation.created"
    RESERVATION_COMMITTED = "reservation.committed"
    RESERVATION_RELEASED = "reservation.released"
    RESERVATION_EXPIRED = "reservation.expired"
    PIPELINE_FINISHED = "pipeline.finished"


class WebhookSubscription(models.Model):
    """Where to POST which events. The secret is a shared secret (needed to sign), so it
    is stored as given; the API shows it only once, at creation or rotation.

    ``secret`` is in the Standard Webhooks form (``whsec_`` + base64 of the key). Secrets
    of before that form were migrated (0006): ``legacy_secret`` keeps the old string, which
    still keys ``X-Stockpipe-Signature`` until the next rotation. After a rotation the old
    secret also signs ``webhook-signature`` until ``previous_secret_expires_at``.
    """

    name = models.CharField(max_length=100, blank=True, default="")
    url = models.URLField(max_length=500, validators=[URLValidator(schemes=["http", "https"])])
    events = models.JSONField(default=list, help_text='Event types, e.g. ["price.changed"].')
    secret = models.CharField(max_length=300)  # a 200-character legacy secret, in base64
    legacy_secret = models.CharField(
        max_length=200,
        blank=True,
        default="",
        help_text="The secret of before the standard form; keys X-Stockpipe-Signature while set.",
    )
    previous_secret = models.CharField(max_length=300, blank=True, default="")
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True)
    secret_rotated_at = models.DateTimeField(null=True, blank=True)
    is_active = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(
        null=True, blank=True, help_text="When the subscription was last deactivated."
    )
    disabled_reason = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name or self.url

    def clean(self) -> None:
        events = self.events
        if not isinstance(events, list) or not events:
            raise ValidationError({"events": "Give a non-empty list of event types."})
        unknown = [e for e in events if e not in WebhookEvent.values]
        if unknown:
            raise ValidationError(
                {
                    "events": f"Unknown event type(s): {', '.join(map(str, unknown))}. "
                    f"Known: {', '.join(WebhookEvent.values)}."
                }
            )


class OutboxQuerySet(models.QuerySet):
    def bulk_create(self, objs, batch_size=None, **kwargs):
        """Plain new outbox rows (thousands per pipeline chunk, flushed by the tracking
        batch) go in with one multi-row INSERT per chunk, like the history rows; their
        primary keys are not set on the objects. Anything else takes Django's way."""
        objs = list(objs)
        if any(kwargs.values()) or any(obj.pk is not None for obj in objs):
            return super().bulk_create(objs, batch_size=batch_size, **kwargs)
        insert_deliveries(objs, using=self.db)
        return objs


class WebhookDelivery(models.Model):
    """One event for one subscription: the outbox row and its delivery state.

    ``stream`` groups the rows that must arrive in order (``product:<id>``); a row is only
    sent when no older pending row of the same (subscription, stream) exists.
    """

    class Status(models.TextChoices):
        PENDING = "pending"
        DELIVERED = "delivered"
        DEAD = "dead"

    # No database constraint: a subscription deleted while a writer still had it cached
    # must not make that writer's product change fail; delivery drops such orphans.
    subscription = models.ForeignKey(
        WebhookSubscription,
        on_delete=models.CASCADE,
        db_constraint=False,
        db_index=False,  # webhook_stream (subscription, stream, status, id) serves it
        related_name="deliveries",
    )
    event_id = models.UUIDField(default=uuid.uuid4, db_index=True)
    event_type = models.CharField(max_length=40, choices=WebhookEvent.choices)
    stream = models.CharField(max_length=80)
    data = models.JSONField()
    created_at = models.DateTimeField(db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    delivered_at = models.DateTimeField(null=True, blank=True)

    objects = OutboxQuerySet.as_manager()

    class Meta:
        ordering = ["-id"]
        verbose_name_plural = "webhook deliveries"
        indexes = [
            models.Index(fields=["subscription", "stream", "status", "id"], name="webhook_stream"),
            models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_queue"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} {self.event_id} -> subscription {self.subscription_id}"


class WebhookAttempt(models.Model):
    """The log of one HTTP attempt of a delivery."""

    delivery = models.ForeignKey(
        WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log"
    )
    number = models.PositiveIntegerField()
    attempted_at = models.DateTimeField()
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    response_body = models.TextField(blank=True, default="")
    duration_ms = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["delivery", "id"]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.status_code or self.error}"


def insert_deliveries(rows: Sequence[WebhookDelivery], *, using: str) -> None:
    """Write new outbox rows set-based (``insert_rows``), without per-row compiling.

    Only the UUID and JSON columns need converting; the others are plain values already.
    """
    if not rows:
        return
    connection = connections[using]
    native_uuid = connection.features.has_native_uuid_field
    names = _attnames()
    event_id, data = names.index("event_id"), names.index("data")
    default = DjangoJSONEncoder().default
    tuples = []
    for row in rows:
        values = [getattr(row, name) for name in names]
        if not native_uuid:
            values[event_id] = values[event_id].hex
        values[data] = encoding.dumps(values[data], default=default)
        tuples.append(values)
    insert_rows(WebhookDelivery, names, tuples, using=using)


def _attnames() -> list[str]:
    return [f.attname for f in WebhookDelivery._meta.concrete_fields if not f.primary_key]
