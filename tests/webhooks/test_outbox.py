"""Outbox rows are written in the transaction of the change, on every write path, and
only for events somebody subscribed to."""

from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django_tasks_db.models import DBTaskResult

from app.models import Product, StockAlert, WebhookDelivery
from app.pipelines.service import process_pipeline
from app.services.context import change_context
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def rows(event_type=None):
    qs = WebhookDelivery.objects.order_by("pk")
    return list(qs.filter(event_type=event_type) if event_type else qs)


class Boom(Exception):
    pass


def test_no_subscription_no_rows_on_any_path():
    product = ProductFactory(stock=10)
    product.price = Decimal("11.00")
    product.save()
    Product.objects.filter(pk=product.pk).update(stock=1)
    Product.objects.bulk_create([Product(sku="NEW-1", name="New", price=1)])
    product.delete()
    process_pipeline(
        {
            "steps": [
                {
                    "op": "upsert_products",
                    "rows": [{"sku": "P-1", "name": "P", "price": "1.00", "stock": 1}],
                }
            ]
        }
    )
    assert WebhookDelivery.objects.count() == 0


def test_without_subscriptions_bulk_writes_do_not_touch_webhook_tables(subscribe):
    subscribe(events=["pipeline.finished"])  # subscriptions exist, none for product events
    products = ProductFactory.create_batch(30)
    ids = [p.pk for p in products]
    Product.objects.filter(pk__in=ids).update(price=F("price") + 1)  # warms the cache
    with CaptureQueriesContext(connection) as ctx:
        Product.objects.filter(pk__in=ids).update(price=F("price") + 1, stock=1)
    sql = [q["sql"].lower() for q in ctx.captured_queries]
    assert sql and not [q for q in sql if "webhook" in q]
    assert WebhookDelivery.objects.count() == 0


def test_one_row_per_subscription_sharing_the_event_id(subscribe):
    first = subscribe(events=["product.created"])
    second = subscribe(events=["product.created", "price.changed"])
    subscribe(events=["price.changed"])
    product = ProductFactory(sku="ONE-1")
    created = rows("product.created")
    assert {r.subscription_id for r in created} == {first.pk, second.pk}
    assert len({r.event_id for r in created}) == 1
    assert created[0].stream == f"product:{product.pk}"
    assert created[0].data["product"] == {
        "id": product.pk,
        "sku": "ONE-1",
        "name": product.name,
        "price": "10.00",
        "stock": 50,
        "low_stock_threshold": 5,
    }


def test_price_change_carries_old_new_source_and_user(subscribe):
    subscribe(events=["price.changed", "product.updated"])
    product = ProductFactory(price=Decimal("10.00"))
    user = UserFactory()
    with change_context(user=user, source="admin"):
        product.price = Decimal("12.50")
        product.name = "Renamed"
        product.save()
    updated, price = rows("product.updated"), rows("price.changed")
    assert [r.data["changes"] for r in updated] == [
        {
            "name": {"old": updated[0].data["changes"]["name"]["old"], "new": "Renamed"},
            "price": {"old": "10.00", "new": "12.50"},
        }
    ]
    assert price[0].data == {
        "product": {"id": product.pk, "sku": product.sku, "name": "Renamed"},
        "old": "10.00",
        "new": "12.50",
        "source": "admin",
        "user_id": user.pk,
    }
    assert updated[0].pk < price[0].pk  # same stream, in this order


def test_save_without_changes_writes_nothing(subscribe):
    subscribe()
    product = ProductFactory()
    WebhookDelivery.objects.all().delete()
    product.save()
    assert rows() == []


def test_bulk_paths_write_rows_with_true_old_values(subscribe):
    subscribe(events=["price.changed", "product.created", "product.updated"])
    a, b = ProductFactory(price=Decimal("5.00")), ProductFactory(price=Decimal("7.00"))
    WebhookDelivery.objects.all().delete()
    with change_context(source="shell"):
        Product.objects.filter(pk__in=[a.pk, b.pk]).update(price=F("price") * 2)
    changes = {
        r.data["product"]["sku"]: (r.data["old"], r.data["new"]) for r in rows("price.changed")
    }
    assert changes == {a.sku: ("5.00", "10.00"), b.sku: ("7.00", "14.00")}
    batched = rows("price.changed")
    assert len({r.event_id for r in batched}) == 2 and all(r.event_id.version == 4 for r in batched)
    a.refresh_from_db()
    assert {r.created_at for r in batched} == {a.updated_at}  # the write's one timestamp
    a.price = Decimal("1.00")
    Product.objects.bulk_update([a], ["price"])
    assert rows("price.changed")[-1].data["old"] == "10.00"
    Product.objects.bulk_create(
        [
            Product(sku=b.sku, name="B2", price=Decimal("3.00")),
            Product(sku="C-9", name="C", price=1),
        ],
        update_conflicts=True,
        unique_fields=["sku"],
        update_fields=["name", "price"],
    )
    assert rows("price.changed")[-1].data["old"] == "14.00"
    assert [r.data["product"]["sku"] for r in rows("product.created")] == ["C-9"]


def test_delete_and_alert_events(subscribe):
    subscribe(events=["product.deleted", "stock.low", "stock.restored", "product.updated"])
    product = ProductFactory(stock=10, low_stock_threshold=5)
    product.stock = 2
    product.save()
    alert = StockAlert.objects.get(product=product)
    low = rows("stock.low")
    assert [r.data["alert"]["id"] for r in low] == [alert.pk]
    assert low[0].data["product"]["stock"] == 2
    assert rows("product.updated")[0].pk < low[0].pk  # the change, then what it caused
    Product.objects.filter(pk=product.pk).update(stock=20)
    restored = rows("stock.restored")
    assert [r.data["alert"]["id"] for r in restored] == [alert.pk]
    assert restored[0].data["product"]["stock"] == 20
    assert restored[0].data["alert"]["resolved_at"] is not None
    pk = product.pk
    product.delete()
    deleted = rows("product.deleted")
    assert [r.data["product"]["id"] for r in deleted] == [pk]
    assert deleted[0].stream == f"product:{pk}"


def test_rolled_back_savepoint_leaves_no_rows_and_no_enqueue(
    subscribe, django_capture_on_commit_callbacks
):
    subscribe()
    product = ProductFactory()
    WebhookDelivery.objects.all().delete()
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(Boom),
        transaction.atomic(),
    ):
        product.price = Decimal("99.00")
        product.save()
        Product.objects.filter(pk=product.pk).update(stock=0)
        assert WebhookDelivery.objects.count() > 0
        raise Boom
    assert WebhookDelivery.objects.count() == 0
    assert callbacks == []


def test_inactive_subscriptions_get_no_rows(subscribe):
    subscribe(is_active=False)
    ProductFactory()
    assert rows() == []


def test_pipeline_events_and_few_tasks_for_many_products(
    subscribe, django_capture_on_commit_callbacks
):
    subscribe()
    rows_in = [
        {"sku": f"BULK-{i:05d}", "name": "Bulk", "price": "1.00", "stock": 10} for i in range(3000)
    ]
    with django_capture_on_commit_callbacks(execute=True):
        result = process_pipeline(
            {
                "steps": [
                    {"op": "upsert_products", "rows": rows_in},
                    {"op": "adjust_prices", "select": {"sku_prefix": "BULK-"}, "percent": "10"},
                ]
            }
        )
    assert result["status"] == "succeeded"
    assert len(rows("product.created")) == 3000
    assert len(rows("price.changed")) == 3000
    finished = rows("pipeline.finished")
    assert [r.data["run"]["id"] for r in finished] == [result["run_id"]]
    assert finished[0].data["run"]["status"] == "succeeded"
    tasks = DBTaskResult.objects.filter(task_path="app.tasks.deliver_webhooks")
    assert 1 <= tasks.count() <= 10  # chunks of streams, never one task per product


def test_failed_and_previewed_runs_finish_without_product_events(subscribe):
    subscribe()
    spec = {
        "steps": [
            {
                "op": "upsert_products",
                "rows": [{"sku": "DRY-1", "name": "Dry", "price": "1.00", "stock": 1}],
            }
        ]
    }
    previewed = process_pipeline({**spec, "dry_run": True})
    failed = process_pipeline(
        {"steps": [*spec["steps"], {"op": "set_prices", "prices": {"NOPE": "1"}}]}
    )
    assert previewed["status"] == "previewed" and failed["status"] == "failed"
    assert rows("product.created") == []
    statuses = {r.data["run"]["id"]: r.data["run"]["status"] for r in rows("pipeline.finished")}
    assert statuses == {previewed["run_id"]: "previewed", failed["run_id"]: "failed"}


def test_abandoned_runs_marked_failed_also_finish(subscribe):
    from datetime import timedelta

    from django.utils import timezone

    from app.models import PipelineRun
    from app.pipelines.service import fail_stale_runs

    subscribe()
    run = PipelineRun.objects.create(
        spec={"steps": []},
        status=PipelineRun.Status.RUNNING,
        heartbeat_at=timezone.now() - timedelta(hours=1),
    )
    assert fail_stale_runs(timedelta(minutes=10)) == 1
    [event] = rows("pipeline.finished")
    assert event.data["run"]["id"] == run.pk and event.data["run"]["status"] == "failed"
