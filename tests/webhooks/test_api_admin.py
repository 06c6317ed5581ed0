"""Subscriptions through the API and the admin: secret shown once, permissions, redeliver."""

import pytest
from django.contrib.auth.models import Permission
from django.test import Client

from app.models import WebhookDelivery, WebhookSubscription
from app.services.tokens import create_token
from app.webhooks.signing import new_standard_secret
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db

BASE = "/api/webhooks"
MANAGE = [
    f"{action}_{model}"
    for action in ("view", "add", "change", "delete")
    for model in ("webhooksubscription", "webhookdelivery")
]


def client_for(*codenames):
    user = UserFactory()
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    _, raw = create_token(user, "test")
    return Client(headers={"Authorization": f"Bearer {raw}"})


def post(client, path, data):
    return client.post(path, data, content_type="application/json")


def test_create_shows_the_secret_once_and_never_again(receiver):
    api = client_for(*MANAGE)
    response = post(
        api, f"{BASE}/subscriptions", {"url": receiver.url, "events": ["price.changed"]}
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert WebhookSubscription.objects.get(pk=body["id"]).secret == secret
    listed = api.get(f"{BASE}/subscriptions").json()
    one = api.get(f"{BASE}/subscriptions/{body['id']}").json()
    rotated = new_standard_secret()
    patched = api.patch(
        f"{BASE}/subscriptions/{body['id']}", {"secret": rotated}, content_type="application/json"
    )
    assert patched.status_code == 200
    for shown in (listed["items"][0], one, patched.json()):
        assert "secret" not in shown and secret not in str(shown) and rotated not in str(shown)
    stored = WebhookSubscription.objects.get()
    assert stored.secret == rotated and stored.previous_secret == secret  # a rotation


def test_given_secret_is_used_and_bad_input_is_422_naming_the_field():
    api = client_for(*MANAGE)
    given = new_standard_secret()
    ok = post(
        api,
        f"{BASE}/subscriptions",
        {"url": "https://example.com/h", "events": ["stock.low"], "secret": given},
    )
    assert ok.status_code == 201 and ok.json()["secret"] == given
    for field, payload in [
        ("url", {"url": "ftp://example.com/h", "events": ["stock.low"]}),
        ("url", {"url": "not a url", "events": ["stock.low"]}),
        ("events", {"url": "https://example.com/h", "events": ["stock.gone"]}),
        ("events", {"url": "https://example.com/h", "events": []}),
        ("secret", {"url": "https://example.com/h", "events": ["stock.low"], "secret": "short"}),
        # not the Standard Webhooks form: no prefix, URL-safe base64, too few bytes
        ("secret", {"url": "https://example.com/h", "events": ["stock.low"], "secret": "s" * 40}),
        (
            "secret",
            {
                "url": "https://example.com/h",
                "events": ["stock.low"],
                "secret": "whsec_" + "-" * 40,
            },
        ),
        (
            "secret",
            {
                "url": "https://example.com/h",
                "events": ["stock.low"],
                "secret": "whsec_" + "A" * 30,
            },
        ),
    ]:
        response = post(api, f"{BASE}/subscriptions", payload)
        assert response.status_code == 422, payload
        assert field in [str(p) for e in response.json()["errors"] for p in e["loc"]], (
            response.json()
        )
    assert WebhookSubscription.objects.count() == 1


def test_permissions():
    anonymous = Client()
    assert anonymous.get(f"{BASE}/subscriptions").status_code == 401
    reader = client_for()
    assert reader.get(f"{BASE}/subscriptions").status_code == 403
    body = {"url": "https://example.com/h", "events": ["stock.low"]}
    assert post(reader, f"{BASE}/subscriptions", body).status_code == 403
    assert WebhookSubscription.objects.count() == 0


def test_deliveries_dead_letter_list_and_redeliver(receiver, subscribe, deliver):
    subscription = subscribe(events=["product.created"])
    receiver.statuses = [400]
    ProductFactory()
    deliver()
    api = client_for(*MANAGE)
    dead = api.get(f"{BASE}/deliveries", {"status": "dead"}).json()
    assert dead["count"] == 1
    item = dead["items"][0]
    assert item["subscription_id"] == subscription.pk and item["last_status_code"] == 400
    detail = api.get(f"{BASE}/deliveries/{item['id']}").json()
    assert [a["status_code"] for a in detail["attempt_log"]] == [400]
    response = api.post(f"{BASE}/deliveries/{item['id']}/redeliver")
    assert response.status_code == 202 and response.json()["status"] == "pending"
    assert api.post(f"{BASE}/deliveries/{item['id']}/redeliver").status_code == 409
    deliver()
    assert WebhookDelivery.objects.get().status == WebhookDelivery.Status.DELIVERED
    assert [r.status for r in receiver.requests] == [400, 200]
    assert (
        client_for("view_webhookdelivery")
        .post(f"{BASE}/deliveries/{item['id']}/redeliver")
        .status_code
        == 403
    )


def test_delete_subscription_removes_its_deliveries(subscribe):
    subscription = subscribe(events=["product.created"])
    ProductFactory()
    api = client_for(*MANAGE)
    assert api.delete(f"{BASE}/subscriptions/{subscription.pk}").status_code == 204
    assert WebhookDelivery.objects.count() == 0
    ProductFactory()  # the cache forgot the subscription: no orphan rows
    assert WebhookDelivery.objects.count() == 0


def test_admin_add_shows_secret_once_and_redeliver_action(receiver, subscribe, deliver):
    admin_user = UserFactory(is_staff=True, is_superuser=True)
    browser = Client()
    browser.force_login(admin_user)
    response = browser.post(
        "/admin/app/webhooksubscription/add/",
        {"name": "ERP", "url": receiver.url, "events": ["product.created"], "is_active": "on"},
        follow=True,
    )
    assert response.status_code == 200
    subscription = WebhookSubscription.objects.get(name="ERP")
    assert subscription.secret.startswith("whsec_")
    assert subscription.secret in response.content.decode()  # shown once, after saving
    receiver.secret = subscription.secret
    change = browser.get(f"/admin/app/webhooksubscription/{subscription.pk}/change/")
    assert change.status_code == 200 and subscription.secret not in change.content.decode()
    receiver.statuses = [400]
    ProductFactory()
    deliver()
    delivery = WebhookDelivery.objects.get(status="dead")
    listing = browser.get("/admin/app/webhookdelivery/", {"status__exact": "dead"})
    assert listing.status_code == 200 and str(delivery.event_id) in listing.content.decode()
    assert browser.get(f"/admin/app/webhookdelivery/{delivery.pk}/change/").status_code == 200
    browser.post(
        "/admin/app/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
    )
    deliver()
    delivery.refresh_from_db()
    assert delivery.status == WebhookDelivery.Status.DELIVERED
