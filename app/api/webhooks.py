"""Webhook subscriptions (create and rotate show the signing secret once; it is never
returned again), re-enabling one, their deliveries with the attempt log, and redelivery."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from django.core.exceptions import ValidationError as DjangoValidationError
from django.core.validators import URLValidator
from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Schema, Status
from ninja.errors import HttpError, ValidationError
from pydantic import Field, StringConstraints, field_validator

from ..core.domain import WebhookSecret
from ..models import WebhookDelivery, WebhookEvent, WebhookSubscription
from ..selectors.replica import replica_reads
from ..webhooks import services
from .auth import AUTH, require_perm
from .errors import responses
from .schemas import ObjectId, Page, PageNumber, PageSize, paginate

router = Router(tags=["webhooks"], auth=AUTH)

EventType = Literal[tuple(WebhookEvent.values)]  # type: ignore[valid-type]
DeliveryStatus = Literal[tuple(WebhookDelivery.Status.values)]  # type: ignore[valid-type]
Url = Annotated[
    str, StringConstraints(min_length=1, max_length=500, pattern=r"^[^\s\x00-\x1f\x7f]+$")
]
SubscriptionName = Annotated[str, StringConstraints(max_length=100, pattern=r"^[^\x00]*$")]
Secret = WebhookSecret
Events = Annotated[list[EventType], Field(min_length=1, max_length=len(WebhookEvent.values))]

_http_url = URLValidator(schemes=["http", "https"])


def _check_url(value: str | None) -> str | None:
    if value is not None:
        try:
            _http_url(value)
        except DjangoValidationError as exc:
            raise ValueError("Enter a valid http:// or https:// URL.") from exc
    return value


class SubscriptionIn(Schema):
    url: Url
    events: Events
    name: SubscriptionName = ""
    is_active: bool = True
    secret: Secret | None = Field(None, description="Omit to have one generated.")

    _url = field_validator("url")(_check_url)


class SubscriptionPatch(Schema):
    """Only the fields sent are changed. A new ``secret`` rotates it, as ``rotate-secret``
    does (with the overlap); it is not echoed."""

    url: Url = None
    events: Events = None
    name: SubscriptionName = None
    is_active: bool = None
    secret: Secret = None

    _url = field_validator("url")(_check_url)


class SubscriptionOut(Schema):
    id: int
    name: str
    url: str
    events: list[str]
    is_active: bool
    disabled_at: datetime | None = Field(
        description="When the subscription was last deactivated (null while active)."
    )
    disabled_reason: str = Field(
        description="Why: a 410 Gone answer (which delivery, when) or deactivated by hand."
    )
    secret_rotated_at: datetime | None
    previous_secret_expires_at: datetime | None = Field(
        description="Until then the previous secret also signs webhook-signature."
    )
    created_at: datetime
    updated_at: datetime


class NewSubscriptionOut(SubscriptionOut):
    secret: str = Field(description="The signing secret; shown only in this response.")


class RotateSecretIn(Schema):
    secret: Secret | None = Field(None, description="Omit to have one generated.")


class SubscriptionPage(Page):
    items: list[SubscriptionOut]


class AttemptOut(Schema):
    number: int
    attempted_at: datetime
    status_code: int | None
    error: str
    duration_ms: int


class DeliveryOut(Schema):
    id: int
    subscription_id: int
    event_id: UUID
    event_type: str
    stream: str
    data: dict[str, Any]
    created_at: datetime
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status_code: int | None
    last_error: str
    delivered_at: datetime | None


class DeliveryDetailOut(DeliveryOut):
    attempt_log: list[AttemptOut]

    @staticmethod
    def resolve_attempt_log(obj: WebhookDelivery) -> list:
        return list(obj.attempt_log.all())


class DeliveryPage(Page):
    items: list[DeliveryOut]


@router.get("/subscriptions", response={200: SubscriptionPage, **responses(401, 403, 422)})
def list_subscriptions(request: HttpRequest, page: PageNumber = 1, page_size: PageSize = 50):
    """Subscriptions, newest first (never their secrets)."""
    require_perm(request, "app.view_webhooksubscription")
    replica_reads(request)  # after the permission check, which reads the primary
    return paginate(WebhookSubscription.objects.order_by("-created_at", "-id"), page, page_size)


@router.post("/subscriptions", response={201: NewSubscriptionOut, **responses(400, 401, 403, 422)})
def create_subscription(request: HttpRequest, payload: SubscriptionIn):
    """Subscribe a URL to events. The response carries the signing secret, once."""
    require_perm(request, "app.add_webhooksubscription")
    subscription = services.create_subscription(**payload.dict())
    return Status(201, subscription)


@router.get(
    "/subscriptions/{subscription_id}",
    response={200: SubscriptionOut, **responses(401, 403, 404, 422)},
)
def get_subscription(request: HttpRequest, subscription_id: ObjectId):
    require_perm(request, "app.view_webhooksubscription")
    return get_object_or_404(WebhookSubscription, pk=subscription_id)


@router.patch(
    "/subscriptions/{subscription_id}",
    response={200: SubscriptionOut, **responses(400, 401, 403, 404, 422)},
)
def update_subscription(
    request: HttpRequest, subscription_id: ObjectId, payload: SubscriptionPatch
):
    """Change URL, events, name, active flag, or rotate the secret."""
    require_perm(request, "app.change_webhooksubscription")
    changes = payload.dict(exclude_unset=True)
    if any(value is None for value in changes.values()):
        raise HttpError(422, "null is not a value for any field.")
    subscription = get_object_or_404(WebhookSubscription, pk=subscription_id)
    try:
        return services.update_subscription(subscription, **changes)
    except DjangoValidationError as exc:
        raise _invalid(exc) from exc


@router.post(
    "/subscriptions/{subscription_id}/rotate-secret",
    response={200: NewSubscriptionOut, **responses(400, 401, 403, 404, 422)},
)
def rotate_secret(request: HttpRequest, subscription_id: ObjectId, payload: RotateSecretIn):
    """Replace the signing secret; the response carries the new one, once. The previous
    secret keeps signing ``webhook-signature`` beside it until ``previous_secret_expires_at``
    (``STOCKPIPE_WEBHOOK_SECRET_OVERLAP``); ``X-Stockpipe-Signature`` switches at once."""
    require_perm(request, "app.change_webhooksubscription")
    subscription = get_object_or_404(WebhookSubscription, pk=subscription_id)
    try:
        return services.rotate_secret(subscription, payload.secret)
    except DjangoValidationError as exc:
        raise _invalid(exc) from exc


@router.post(
    "/subscriptions/{subscription_id}/enable",
    response={200: SubscriptionOut, **responses(401, 403, 404, 409, 422)},
)
def enable_subscription(request: HttpRequest, subscription_id: ObjectId):
    """Activate a deactivated subscription (after a ``410 Gone``, or by hand); what waited
    meanwhile is sent, oldest first."""
    require_perm(request, "app.change_webhooksubscription")
    subscription = get_object_or_404(WebhookSubscription, pk=subscription_id)
    if subscription.is_active:
        raise HttpError(409, "This subscription is active.")
    return services.enable_subscription(subscription)


def _invalid(exc: DjangoValidationError) -> ValidationError:
    """A service's field error as the API's 422 (``loc`` ``["body", "payload", field]``)."""
    return ValidationError(
        [
            {"loc": ["body", "payload", field], "msg": message}
            for field, messages in exc.message_dict.items()
            for message in messages
        ]
    )


@router.delete(
    "/subscriptions/{subscription_id}", response={204: None, **responses(401, 403, 404, 422)}
)
def delete_subscription(request: HttpRequest, subscription_id: ObjectId):
    """Delete a subscription with its deliveries and their log."""
    require_perm(request, "app.delete_webhooksubscription")
    get_object_or_404(WebhookSubscription, pk=subscription_id).delete()
    return Status(204, None)


@router.get("/deliveries", response={200: DeliveryPage, **responses(401, 403, 422)})
def list_deliveries(
    request: HttpRequest,
    subscription_id: ObjectId = None,
    status: DeliveryStatus = None,
    event_type: EventType = None,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """Outbox rows, newest first; ``status=dead`` is the dead-letter queue."""
    require_perm(request, "app.view_webhookdelivery")
    replica_reads(request)  # after the permission check, which reads the primary
    rows = WebhookDelivery.objects.order_by("-id")
    if subscription_id:
        rows = rows.filter(subscription_id=subscription_id)
    if status:
        rows = rows.filter(status=status)
    if event_type:
        rows = rows.filter(event_type=event_type)
    return paginate(rows, page, page_size)


@router.get(
    "/deliveries/{delivery_id}", response={200: DeliveryDetailOut, **responses(401, 403, 404, 422)}
)
def get_delivery(request: HttpRequest, delivery_id: ObjectId):
    """One delivery with its attempt log."""
    require_perm(request, "app.view_webhookdelivery")
    return get_object_or_404(WebhookDelivery, pk=delivery_id)


@router.post(
    "/deliveries/{delivery_id}/redeliver",
    response={202: DeliveryOut, **responses(401, 403, 404, 409, 422)},
)
def redeliver(request: HttpRequest, delivery_id: ObjectId):
    """Queue a dead-lettered (or delivered) event again for this subscription."""
    require_perm(request, "app.change_webhookdelivery")
    delivery = get_object_or_404(WebhookDelivery, pk=delivery_id)
    if delivery.status == WebhookDelivery.Status.PENDING:
        raise HttpError(409, "This delivery is still pending.")
    services.redeliver([delivery.pk])
    delivery.refresh_from_db()
    return Status(202, delivery)
