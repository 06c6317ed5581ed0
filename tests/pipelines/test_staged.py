"""The set-based route of map steps (``app.pipelines.staged``): when it is taken, and that
it has the object route's effects beyond one chunk of products."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_init, pre_save
from django.test.utils import CaptureQueriesContext

from app.models import Product, WebhookDelivery, WebhookEvent, WebhookSubscription
from app.pipelines.staged import STAGE
from app.utils.utils import process_pipeline
from app.webhooks import outbox
from tests.pipelines.test_identity import Rollback, observe

pytestmark = pytest.mark.django_db

N = 2_500  # more than one chunk (tracking.CHUNK) of products


def user_pre_save(sender, instance, **kwargs):
    pass


def user_post_init(sender, instance, **kwargs):
    pass


def staged_queries(spec: dict) -> int:
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(spec)
    assert result["status"] in ("succeeded", "previewed"), result
    return sum(STAGE in q["sql"] for q in queries.captured_queries)


@pytest.fixture
def products(db):
    Product.objects.bulk_create(
        Product(sku=f"S-{i:05d}", name=f"P{i}", price=Decimal("10.00"), stock=4 + i % 12)
        for i in range(N)
    )


def map_steps():
    return [
        {"op": "set_prices", "prices": {f"S-{i:05d}": f"{10 + i % 7}.50" for i in range(N)}},
        {"op": "adjust_stock", "deltas": {f"S-{i:05d}": (i % 9) - 4 for i in range(N)}},
        {"op": "set_stock", "stock": {f"S-{i:05d}": i % 8 for i in range(0, N, 3)}},
    ]


def test_only_project_receivers_take_the_staged_route(products):
    assert staged_queries({"name": "x", "steps": map_steps()}) > 0


@pytest.mark.parametrize("blocker", ["user pre_save", "user post_init", "dry run"])
def test_anything_needing_instances_takes_the_object_route(products, blocker):
    spec = {"name": "x", "steps": map_steps()}
    if blocker == "user pre_save":
        pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.user_pre_save")
    elif blocker == "user post_init":
        post_init.connect(user_post_init, sender=Product, dispatch_uid="test.user_post_init")
    else:
        spec["dry_run"] = True
    try:
        assert staged_queries(spec) == 0
    finally:
        pre_save.disconnect(sender=Product, dispatch_uid="test.user_pre_save")
        post_init.disconnect(sender=Product, dispatch_uid="test.user_post_init")


def outbox_rows() -> dict:
    """Per stream, in order: the outbox's contract (streams are independent of each other)."""
    rows: dict[str, list] = {}
    for event_type, stream, status, data in WebhookDelivery.objects.order_by("id").values_list(
        "event_type", "stream", "status", "data"
    ):
        for name in ("id", "opened_at", "resolved_at", "started_at", "finished_at"):
            data.get("alert", {}).pop(name, None)  # an alert's or a run's: differ between runs
            data.get("run", {}).pop(name, None)
        rows.setdefault(stream, []).append((event_type, status, json.dumps(data, sort_keys=True)))
    return dict(sorted(rows.items()))


@pytest.mark.parametrize("subscribed", [False, True], ids=["no webhooks", "subscribed"])
def test_both_routes_have_the_same_effects_over_many_chunks(products, subscribed):
    """History, ledger, alerts, products and webhook outbox rows after the same map steps,
    staged vs per object."""
    spec = {"name": "x", "steps": map_steps()}
    seen = {}
    for route in ("staged", "objects"):
        outbox.forget_subscriptions()
        try:
            with transaction.atomic():
                if subscribed:
                    WebhookSubscription.objects.create(
                        url="https://hooks.example.com/x", events=WebhookEvent.values, secret="s"
                    )
                if route == "objects":
                    pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.objects")
                try:
                    assert (staged_queries(spec) > 0) == (route == "staged")
                finally:
                    pre_save.disconnect(sender=Product, dispatch_uid="test.objects")
                # Run ids differ (PostgreSQL does not roll sequences back): not the effects.
                state = (observe(), outbox_rows())
                seen[route] = re.sub(r"pipeline:\d+", "pipeline:N", repr(state))
                raise Rollback
        except Rollback:
            pass
    outbox.forget_subscriptions()
    assert ("'price.changed'" in seen["staged"]) == subscribed
    assert seen["staged"].count("'pipeline:N'") > N  # history and ledger rows were written
    assert "'pending'" in seen["staged"]  # and alerts opened
    assert seen["staged"] == seen["objects"]


def test_failure_names_the_item_and_leaves_everything_unchanged(products):
    before = observe()
    deltas = {f"S-{i:05d}": 1 for i in range(N)}
    deltas["S-02400"] = -1000
    deltas["NOPE"] = 1
    result = process_pipeline(
        {"name": "x", "steps": [map_steps()[0], {"op": "adjust_stock", "deltas": deltas}]}
    )
    assert result["status"] == "failed"
    # Unknown SKUs are reported first; the stock check runs once every SKU is known.
    assert result["error"]["errors"] == [
        {"loc": ["steps", 1, "deltas", "NOPE"], "msg": "step 1 (adjust_stock): unknown SKU 'NOPE'"}
    ]
    del deltas["NOPE"]
    result = process_pipeline({"name": "x", "steps": [{"op": "adjust_stock", "deltas": deltas}]})
    assert result["error"]["errors"] == [
        {
            "loc": ["steps", 0, "deltas", "S-02400"],
            "msg": "step 0 (adjust_stock): stock of S-02400 would go negative: 4 -1000 = -996",
        }
    ]
    assert observe() == before


def stages_left() -> int:
    """Staging tables in the database, of every session: pg_class lists the temporary
    tables of all server connections, whichever one this query runs on (behind PgBouncer,
    any of its pool)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relname = %s AND relpersistence = 't'", [STAGE]
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_staging_table_outlives_its_transaction():
    """Behind a transaction pooler the next transaction of any client may get the server
    connection a run used: the stage must end with the run (committed or rolled back)."""
    Product.objects.bulk_create(
        Product(sku=f"T-{i}", name=f"P{i}", price=Decimal("10.00"), stock=10) for i in range(5)
    )
    steps = [
        {"op": "set_prices", "prices": {f"T-{i}": "12.00" for i in range(5)}},
        {"op": "adjust_stock", "deltas": {f"T-{i}": -1 for i in range(5)}},
    ]
    for price in ("12.00", "13.00"):  # twice: the second run stages afresh
        steps[0]["prices"] = {f"T-{i}": price for i in range(5)}
        assert staged_queries({"name": "x", "steps": steps}) > 0
        assert stages_left() == 0
    failed = process_pipeline(
        {"name": "x", "steps": [{"op": "adjust_stock", "deltas": {"T-0": -1, "NOPE": 1}}]}
    )
    assert failed["status"] == "failed"
    assert stages_left() == 0
    assert set(Product.objects.values_list("price", "stock")) == {(Decimal("13.00"), 8)}
