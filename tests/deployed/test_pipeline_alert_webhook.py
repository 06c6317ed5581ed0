"""A pipeline run through the API, the low-stock alert it opens delivered by the worker over
SMTP, and webhooks delivered by the worker to a real HTTP receiver (the stack runs with
STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS=true, as the receiver listens on 127.0.0.1)."""

from __future__ import annotations

import time

import pytest

from app.webhooks.signing import verify_signature
from tests.deployed.conftest import wait_for
from tests.webhooks.receiver import WebhookReceiver


@pytest.fixture
def receiver():
    receiver = WebhookReceiver()
    receiver.start()
    yield receiver
    receiver.stop()


def test_pipeline_alert_by_smtp_and_signed_webhooks(stack, accounts, receiver):
    operator = accounts["operator"]["token"]
    integrator = accounts["integrator"]["token"]
    sku, name = f"E2E-PIPE-{stack.run}", f"E2E pipeline product {stack.run}"

    subscribed = stack.request(
        "POST",
        "/api/webhooks/subscriptions",
        integrator,
        {"url": receiver.url, "events": ["product.created", "stock.low", "pipeline.finished"]},
    )
    assert subscribed.status == 201, subscribed.body
    secret = subscribed.json()["secret"]
    receiver.secret = secret  # verify every delivery with the standardwebhooks package too
    for _ in range(3):
        listed = stack.request("GET", "/api/webhooks/subscriptions", integrator)
        assert listed.status == 200, listed.body
    # Each process remembers which subscriptions exist for STOCKPIPE_WEBHOOK_SUBSCRIPTION_CACHE
    # seconds (README, Webhooks): the other gunicorn worker may still hold the set of before.
    time.sleep(float(stack.env.get("STOCKPIPE_WEBHOOK_SUBSCRIPTION_CACHE", 2.0)) + 0.5)

    specs = [
        {
            "name": f"e2e create {stack.run}",
            "steps": [
                {
                    "op": "upsert_products",
                    "rows": [{"sku": sku, "name": name, "price": "20.00", "stock": 12}],
                }
            ],
        },
        {
            "name": f"e2e preview {stack.run}",
            "dry_run": True,
            "steps": [{"op": "set_stock", "stock": {sku: 0}}],
        },
        {"name": f"e2e drop {stack.run}", "steps": [{"op": "adjust_stock", "deltas": {sku: -10}}]},
    ]
    for spec in specs:
        ran = stack.request("POST", "/api/pipelines/execute", operator, spec)
        assert ran.status == 200, (spec["name"], ran.status, ran.body)
        assert ran.json()["status"] == ("previewed" if spec.get("dry_run") else "succeeded")
    run_id = ran.json()["run_id"]
    assert ran.json()["totals"]["alerts_opened"] == 1

    for _ in range(3):
        run = stack.request("GET", f"/api/pipelines/runs/{run_id}", operator)
        assert run.status == 200, run.body
        assert run.json()["status"] == "succeeded"

    subject = f"Low Stock Alert: {name}"
    mail = wait_for(
        lambda: [m for m in stack.mail() if m["Subject"] == subject],
        timeout=60,
        message=f"the worker to send {subject!r} through SMTP",
    )
    assert len(mail) == 1
    assert "Only 2 units remaining" in mail[0].get_content()
    assert mail[0]["To"] == stack.env["STOCKPIPE_MANAGER_EMAIL"]

    def delivered(event_type: str):
        return [
            r for r in receiver.requests if r.json["type"] == event_type and sku in r.body.decode()
        ]

    for event_type in ("product.created", "stock.low"):
        [request] = wait_for(
            lambda t=event_type: delivered(t), timeout=60, message=f"{event_type} for {sku}"
        )
        assert request.rejected is None and request.status == 200, request.rejected
        assert verify_signature(
            secret,
            request.headers["X-Stockpipe-Timestamp"],
            request.body,
            request.headers["X-Stockpipe-Signature"],
        ), request.headers
    finished = wait_for(
        lambda: [
            r
            for r in receiver.requests
            if r.json["type"] == "pipeline.finished" and r.json["data"]["run"]["id"] == run_id
        ],
        timeout=60,
        message="pipeline.finished",
    )
    assert finished[0].json["data"]["run"]["status"] == "succeeded"
