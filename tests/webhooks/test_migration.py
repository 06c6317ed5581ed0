"""Migration 0006 moves secrets to the Standard Webhooks form without breaking receivers:
the old string keeps keying X-Stockpipe-Signature, and the standard secret is
``whsec_`` + base64 of the old string's bytes (derivable by the receiver)."""

from __future__ import annotations

import base64
import secrets
from decimal import Decimal

import pytest
from django.core.management import call_command

from app.models import WebhookSubscription
from app.webhooks import services
from app.webhooks.signing import new_standard_secret, verify_signature
from tests.factories import ProductFactory
from tests.migrations import migrated_back

BEFORE = "0005_retention"


@pytest.mark.django_db(transaction=True)
def test_0006_keeps_old_receivers_working_and_gives_a_derivable_standard_secret(receiver, deliver):
    # What stockpipe generated before (whsec_ + secrets.token_urlsafe(32)); with "-" or "_",
    # as about 3 in 4 were, it is not standard base64.
    generated = "whsec_" + "q7-Kx_Pz" * 5 + "abc"
    # One without them is standard base64 (unpadded) already: left as it is.
    lucky = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    while "+" in lucky or "/" in lucky:  # token_urlsafe never has these
        lucky = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode().rstrip("=")
    given = "my-own-secret-16"  # a short secret a user typed
    standard = new_standard_secret()  # already in the standard form: left alone
    with migrated_back(BEFORE) as model:
        old_model = model("WebhookSubscription")
        for name, secret in [
            ("generated", generated),
            ("given", given),
            ("standard", standard),
            ("lucky", lucky),
        ]:
            old_model.objects.create(
                name=name, url=receiver.url, events=["price.changed"], secret=secret
            )
        call_command("migrate", "app", verbosity=0)
        rows = {s.name: s for s in WebhookSubscription.objects.all()}
        for name, old in [("generated", generated), ("given", given)]:
            row = rows[name]
            assert row.legacy_secret == old
            assert row.secret == "whsec_" + base64.b64encode(old.encode()).decode()
        for name, secret in [("standard", standard), ("lucky", lucky)]:
            assert rows[name].secret == secret and rows[name].legacy_secret == ""

        WebhookSubscription.objects.exclude(name="generated").update(is_active=False)
        product = ProductFactory(price=Decimal("10.00"))
        product.price = Decimal("12.00")
        product.save()
        derived = "whsec_" + base64.b64encode(generated.encode()).decode()  # as the docs say
        receiver.secret = derived
        deliver()
        [request] = receiver.requests
        assert request.rejected is None and request.status == 200  # standardwebhooks accepts
        assert not request.verifies_with(generated)  # the old string is not a standard key
        headers = request.headers
        assert verify_signature(  # the existing receiver's check, with the secret it holds
            generated,
            headers["X-Stockpipe-Timestamp"],
            request.body,
            headers["X-Stockpipe-Signature"],
        )

        # A rotation ends the legacy key: both headers then use the new secret.
        rotated = services.rotate_secret(WebhookSubscription.objects.get(name="generated"))
        assert rotated.legacy_secret == "" and rotated.previous_secret == derived

        call_command("migrate", "app", BEFORE, verbosity=0)  # backwards
        rows = {s.name: s.secret for s in old_model.objects.all()}
        assert rows["given"] == given and rows["standard"] == standard and rows["lucky"] == lucky
