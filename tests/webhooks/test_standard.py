"""Standard Webhooks, checked by a real HTTP receiver that verifies with the reference
``standardwebhooks`` package: headers and secrets, rotation with its overlap, replays and
alterations refused, 410 Gone, Retry-After and the request timeout."""

from __future__ import annotations

import base64
import email.utils
import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

import environ
import pytest
from django.test import Client
from django.utils import timezone

from app import conf
from app.models import WebhookDelivery, WebhookSubscription
from app.webhooks import services
from app.webhooks.signing import (
    new_standard_secret,
    sign_standard,
    standard_key,
    verify_signature,
)
from tests.factories import ProductFactory, UserFactory
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import verify_error

pytestmark = pytest.mark.django_db
Status = WebhookDelivery.Status
BASE = "/api/webhooks"


def set_price(product, price):
    product.price = Decimal(price)
    product.save()


def resend(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str]:
    """POST exactly these bytes and headers again (a replay or a forgery) to the receiver."""
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def admin_client():
    browser = Client()
    browser.force_login(UserFactory(is_staff=True, is_superuser=True))
    return browser


def api_client():
    from app.services.tokens import create_token

    _, raw = create_token(UserFactory(is_staff=True, is_superuser=True), "test")
    return Client(headers={"Authorization": f"Bearer {raw}"})


# --- headers and secrets -------------------------------------------------------------------


def test_generated_secrets_are_in_the_standard_form():
    secret = services.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert services.new_secret() != secret


def test_our_signature_is_the_reference_packages_for_padded_and_unpadded_secrets():
    from datetime import UTC, datetime

    from standardwebhooks import Webhook

    body = b'{"id":"e1"}'
    for secret in (SECRET, SECRET.rstrip("="), "whsec_" + base64.b64encode(b"k" * 25).decode()):
        expected = Webhook(secret).sign("e1", datetime.fromtimestamp(1_800_000_000, UTC), body)
        assert sign_standard(standard_key(secret), "e1", 1_800_000_000, body) == expected


def test_delivery_carries_standard_headers_that_the_reference_verifier_accepts(
    receiver, subscribe, deliver
):
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "12.00")
    deliver()
    [request] = receiver.requests
    assert request.rejected is None and request.status == 200  # verified by standardwebhooks
    headers = request.headers
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.DELIVERED
    assert headers["webhook-id"] == str(delivery.event_id) == request.json["id"]
    assert headers["webhook-timestamp"] == headers["X-Stockpipe-Timestamp"]
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 60
    [signature] = headers["webhook-signature"].split(" ")  # one secret, one signature
    assert signature.startswith("v1,")
    # The original header still verifies as before: keyed with the secret string.
    assert verify_signature(
        SECRET, headers["X-Stockpipe-Timestamp"], request.body, headers["X-Stockpipe-Signature"]
    )
    assert not request.verifies_with(new_standard_secret())


def test_altered_deliveries_are_rejected_by_the_reference_verifier(receiver, subscribe, deliver):
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "12.00")
    deliver()
    [genuine] = receiver.requests
    headers = {k.lower(): v for k, v in genuine.headers.items() if k.lower().startswith("webhook-")}
    headers["Content-Type"] = "application/json"
    assert resend(receiver.url, genuine.body, headers)[0] == 200  # the control: untouched
    forged_body = genuine.body.replace(b'"12.00"', b'"0.01"')
    assert forged_body != genuine.body
    other_id = {**headers, "webhook-id": "00000000-0000-0000-0000-000000000000"}
    later = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 1)}
    wrong_key = {
        **headers,
        "webhook-signature": sign_standard(
            standard_key(new_standard_secret()),
            headers["webhook-id"],
            later["webhook-timestamp"],
            genuine.body,
        ),
    }
    for body, sent in [
        (forged_body, headers),
        (genuine.body, other_id),
        (genuine.body, later),
        (genuine.body, wrong_key),
    ]:
        status, answer = resend(receiver.url, body, sent)
        assert status == 401, (sent, answer)
        assert receiver.requests[-1].rejected == "No matching signature found"


def test_a_replayed_delivery_with_a_stale_timestamp_is_rejected(receiver, subscribe):
    """A captured delivery sent again later: its signed timestamp is too old, and a fresh
    timestamp would not match the signature (the previous test)."""
    subscription = subscribe(events=["price.changed"])
    set_price(ProductFactory(), "12.00")
    row = WebhookDelivery.objects.get()
    body = services.event_body(row)
    captured = services.request_headers(row, subscription, body, now=time.time() - 600)
    status, _ = resend(receiver.url, body, captured)
    assert status == 401
    assert receiver.requests[-1].rejected == "Message timestamp too old"
    fresh = services.request_headers(row, subscription, body)
    assert resend(receiver.url, body, fresh)[0] == 200  # the same delivery, signed now


# --- rotation ------------------------------------------------------------------------------


def test_rotation_overlap_signs_with_both_secrets_then_only_the_new_one(
    receiver, subscribe, deliver, settings
):
    settings.STOCKPIPE_WEBHOOK_SECRET_OVERLAP = 2.0
    subscription = subscribe(events=["price.changed"])
    product = ProductFactory()
    response = api_client().post(
        f"{BASE}/subscriptions/{subscription.pk}/rotate-secret", {}, content_type="application/json"
    )
    assert response.status_code == 200, response.json()
    rotated = response.json()
    new = rotated["secret"]
    assert new != SECRET and new.startswith("whsec_")
    expires = rotated["previous_secret_expires_at"]
    assert expires is not None and rotated["secret_rotated_at"] is not None

    set_price(product, "11.00")  # during the overlap
    deliver()
    during = receiver.requests[-1]
    assert during.rejected is None and during.status == 200  # the old secret still verifies
    assert during.verifies_with(new)  # and so does the new one
    assert len(during.headers["webhook-signature"].split(" ")) == 2
    # X-Stockpipe-Signature holds one signature: the new secret's, at once.
    assert verify_signature(
        new,
        during.headers["X-Stockpipe-Timestamp"],
        during.body,
        during.headers["X-Stockpipe-Signature"],
    )

    time.sleep(
        max(
            0.0,
            (
                WebhookSubscription.objects.get().previous_secret_expires_at - timezone.now()
            ).total_seconds(),
        )
        + 0.1
    )
    set_price(product, "12.00")  # after the overlap
    deliver()
    after = receiver.requests[-1]
    assert after.json["data"]["new"] == "12.00"
    assert after.rejected == "No matching signature found"  # the old secret no longer works
    assert after.status == 401
    assert after.verifies_with(new)
    assert len(after.headers["webhook-signature"].split(" ")) == 1


def test_rotation_errors_use_the_api_error_shape_and_need_the_change_permission(subscribe):
    subscription = subscribe(events=["price.changed"])
    api = api_client()
    url = f"{BASE}/subscriptions/{subscription.pk}/rotate-secret"
    for secret in ("whsec_short", SECRET):  # not the standard form; the current secret
        response = api.post(url, {"secret": secret}, content_type="application/json")
        assert response.status_code == 422, response.json()
        body = response.json()
        assert body["detail"] and body["errors"][0]["loc"][-1] == "secret", body
    assert WebhookSubscription.objects.get().secret == SECRET  # unchanged
    given = new_standard_secret()
    response = api.post(url, {"secret": given}, content_type="application/json")
    assert response.status_code == 200 and response.json()["secret"] == given
    assert (
        api.post(
            f"{BASE}/subscriptions/999999/rotate-secret", {}, content_type="application/json"
        ).status_code
        == 404
    )
    from django.contrib.auth.models import Permission

    from app.services.tokens import create_token

    viewer = UserFactory()
    viewer.user_permissions.add(Permission.objects.get(codename="view_webhooksubscription"))
    _, raw = create_token(viewer, "t")
    read_only = Client(headers={"Authorization": f"Bearer {raw}"})
    assert read_only.post(url, {}, content_type="application/json").status_code == 403
    assert Client().post(url, {}, content_type="application/json").status_code == 401
    schema = api.get("/api/openapi.json").json()
    operation = schema["paths"][f"{BASE}/subscriptions/{{subscription_id}}/rotate-secret"]["post"]
    assert {"200", "401", "403", "404", "422"} <= set(operation["responses"])
    assert f"{BASE}/subscriptions/{{subscription_id}}/enable" in schema["paths"]


def test_overlap_zero_drops_the_old_secret_at_once(subscribe, settings):
    settings.STOCKPIPE_WEBHOOK_SECRET_OVERLAP = 0
    subscription = services.rotate_secret(subscribe(events=["price.changed"]))
    assert subscription.previous_secret == "" and subscription.previous_secret_expires_at is None
    assert services.signing_keys(subscription) == [standard_key(subscription.secret)]


def test_rotation_from_the_admin_shows_the_new_secret_once(subscribe):
    subscription = subscribe(events=["price.changed"])
    response = admin_client().post(
        "/admin/app/webhooksubscription/",
        {"action": "rotate_secret", "_selected_action": [subscription.pk]},
        follow=True,
    )
    subscription.refresh_from_db()
    assert subscription.secret != SECRET and subscription.previous_secret == SECRET
    assert subscription.secret in response.content.decode()
    page = admin_client().get(f"/admin/app/webhooksubscription/{subscription.pk}/change/")
    assert subscription.secret not in page.content.decode()


def test_the_admin_refuses_a_secret_not_in_the_standard_form(receiver):
    browser = admin_client()
    for secret in ("s" * 40, "whsec_" + "-_" * 20):
        response = browser.post(
            "/admin/app/webhooksubscription/add/",
            {"url": receiver.url, "events": ["price.changed"], "is_active": "on", "secret": secret},
        )
        assert response.status_code == 200 and "secret must" in response.content.decode()
    assert not WebhookSubscription.objects.exists()
    given = new_standard_secret()
    browser.post(
        "/admin/app/webhooksubscription/add/",
        {"url": receiver.url, "events": ["price.changed"], "is_active": "on", "secret": given},
    )
    assert WebhookSubscription.objects.get().secret == given


# --- delivery rules ------------------------------------------------------------------------


def test_410_gone_disables_the_subscription_until_re_enabled(receiver, subscribe, deliver):
    subscription = subscribe(events=["price.changed"])
    first, second = ProductFactory(sku="G-1"), ProductFactory(sku="G-2")
    set_price(first, "11.00")
    set_price(second, "11.00")
    receiver.statuses = [410]
    deliver()
    assert [r.status for r in receiver.requests] == [410]  # nothing after the 410
    subscription.refresh_from_db()
    assert subscription.is_active is False and subscription.disabled_at is not None
    gone = WebhookDelivery.objects.get(last_status_code=410)
    assert (
        "410 Gone" in subscription.disabled_reason and str(gone.pk) in subscription.disabled_reason
    )
    # The row is parked, not dead: pending, its attempt counted.
    assert gone.status == Status.PENDING and gone.attempts == 1
    set_price(first, "12.00")  # a disabled subscription gets no new rows
    assert WebhookDelivery.objects.count() == 2
    deliver()
    assert len(receiver.requests) == 1

    api = api_client()
    shown = api.get(f"{BASE}/subscriptions/{subscription.pk}").json()
    assert shown["is_active"] is False and "410 Gone" in shown["disabled_reason"]
    assert shown["disabled_at"] is not None
    listing = admin_client().get("/admin/app/webhooksubscription/").content.decode()
    assert "410 Gone" in listing

    response = api.post(f"{BASE}/subscriptions/{subscription.pk}/enable")
    assert response.status_code == 200, response.json()
    assert response.json()["is_active"] is True and response.json()["disabled_at"] is None
    assert response.json()["disabled_reason"] == ""
    assert api.post(f"{BASE}/subscriptions/{subscription.pk}/enable").status_code == 409
    deliver()
    assert sorted(r.json["data"]["product"]["sku"] for r in receiver.requests[1:]) == ["G-1", "G-2"]
    assert set(WebhookDelivery.objects.values_list("status", flat=True)) == {Status.DELIVERED}


def test_re_enable_from_the_admin_and_deactivation_by_hand_is_recorded(
    receiver, subscribe, deliver
):
    subscription = subscribe(events=["price.changed"])
    browser = admin_client()
    response = browser.post(
        f"/admin/app/webhooksubscription/{subscription.pk}/change/",
        {"name": "", "url": subscription.url, "events": ["price.changed"]},  # untick "active"
    )
    assert response.status_code == 302
    subscription.refresh_from_db()
    assert subscription.is_active is False and subscription.disabled_at is not None
    assert subscription.disabled_reason.startswith("Deactivated by hand (admin")
    set_price(ProductFactory(), "11.00")  # not subscribed while inactive: no row
    page = browser.get(f"/admin/app/webhooksubscription/{subscription.pk}/change/").content.decode()
    assert "Deactivated by hand" in page
    browser.post(
        "/admin/app/webhooksubscription/",
        {"action": "enable", "_selected_action": [subscription.pk]},
    )
    subscription.refresh_from_db()
    assert subscription.is_active and subscription.disabled_at is None
    assert subscription.disabled_reason == ""


def _next_attempt_in(delivery: WebhookDelivery) -> float:
    delivery.refresh_from_db()
    return (delivery.next_attempt_at - timezone.now()).total_seconds()


@pytest.mark.parametrize(
    ("status", "retry_after", "expected"),
    [
        (429, "120", 120),  # delay-seconds
        (503, "+300", 300),  # HTTP-date (filled in below)
        (429, "86400", 600),  # capped at STOCKPIPE_DELIVERY_BACKOFF_MAX
        (500, "120", 1),  # not a 429 or 503: the backoff
        (429, "not a date", 1),  # unreadable: the backoff
    ],
)
def test_retry_after_on_429_and_503_sets_the_next_attempt(
    receiver, subscribe, deliver, settings, status, retry_after, expected
):
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = 1.0
    settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 600.0
    if retry_after.startswith("+"):
        retry_after = email.utils.formatdate(time.time() + int(retry_after), usegmt=True)
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "11.00")
    receiver.statuses = [(status, {"Retry-After": retry_after})]
    deliver()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.PENDING and delivery.attempts == 1
    assert expected - 3 <= _next_attempt_in(delivery) <= expected + 1
    assert len(receiver.requests) == 1


def test_the_timeout_setting_bounds_the_wait_for_a_slow_receiver(
    receiver, subscribe, deliver, settings, monkeypatch
):
    monkeypatch.delenv("STOCKPIPE_WEBHOOK_TIMEOUT", raising=False)
    assert conf.environment_settings(environ.Env())["STOCKPIPE_WEBHOOK_TIMEOUT"] == 15.0
    settings.STOCKPIPE_WEBHOOK_TIMEOUT = 0.5
    settings.STOCKPIPE_DELIVERY_BACKOFF_BASE = settings.STOCKPIPE_DELIVERY_BACKOFF_MAX = 3600
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "11.00")
    receiver.delay = 3.0
    started = time.monotonic()
    deliver()
    assert time.monotonic() - started < 2.5  # gave up after about 0.5 s, not 3
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == Status.PENDING and "timed out" in delivery.last_error
    [attempt] = delivery.attempt_log.all()
    assert attempt.status_code is None and 400 <= attempt.duration_ms < 2500
    receiver.delay = 0.2
    settings.STOCKPIPE_WEBHOOK_TIMEOUT = 2.0
    WebhookDelivery.objects.update(next_attempt_at=None)  # time passes
    deliver()
    delivery.refresh_from_db()
    assert delivery.status == Status.DELIVERED


def test_json_of_requests_is_what_was_signed(receiver, subscribe, deliver):
    """The body is sent byte for byte as signed: re-serialised JSON would not verify."""
    subscribe(events=["price.changed"])
    set_price(ProductFactory(), "12.00")
    deliver()
    [request] = receiver.requests
    reserialised = json.dumps(request.json, indent=1).encode()
    assert verify_error(SECRET, reserialised, request.headers) == "No matching signature found"
