"""The verification code of docs/webhooks.md, run as printed against real deliveries."""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from decimal import Decimal
from pathlib import Path

import pytest

from app.models import WebhookDelivery
from app.webhooks import services
from app.webhooks.signing import standard_secret_from_legacy
from tests.factories import ProductFactory
from tests.webhooks.conftest import SECRET

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"


def doc_block_after(marker: str, language: str) -> str:
    text = DOC.read_text()
    after = text[text.index(marker) :]
    return re.search(rf"```{language}\n(.*?)```", after, re.S).group(1)


@pytest.mark.django_db
def test_the_documented_standardwebhooks_snippet_verifies_real_deliveries(
    receiver, subscribe, deliver
):
    namespace: dict = {}
    exec(doc_block_after("tests/webhooks/test_docs.py runs", "python"), namespace)
    namespace["WEBHOOK_SECRET"] = SECRET  # the subscription's secret, as the doc says
    verified_event = namespace["verified_event"]

    subscription = subscribe(events=["price.changed"])
    product = ProductFactory(price=Decimal("10.00"))
    product.price = Decimal("12.00")
    product.save()
    deliver()
    [request] = receiver.requests
    assert verified_event(request.body, request.headers) == request.json
    altered = request.body.replace(b'"12.00"', b'"1.00"')
    assert verified_event(altered, request.headers) is None
    row = WebhookDelivery.objects.get()
    body = services.event_body(row)
    stale = services.request_headers(row, subscription, body, now=time.time() - 600)
    assert verified_event(body, stale) is None
    assert verified_event(body, services.request_headers(row, subscription, body)) is not None
    namespace["WEBHOOK_SECRET"] = services.new_secret()
    assert verified_event(request.body, request.headers) is None


def test_the_documented_derivation_of_a_migrated_secret_matches_the_migration():
    command = doc_block_after("without asking stockpipe", "bash").strip()
    old = "whsec_" + "Ab-_9" * 8
    command = command.replace(shlex.quote("whsec_your-old-secret"), shlex.quote(old))
    assert old in command
    printed = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert printed == standard_secret_from_legacy(old)
