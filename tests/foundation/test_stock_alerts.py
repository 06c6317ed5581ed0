"""Low stock: one alert and one e-mail per episode, only for committed work."""

from decimal import Decimal

import pytest
from django.core import mail
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from app.models import DeliveryStatus, Product, StockAlert
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def deliver(django_capture_on_commit_callbacks, run_worker):
    """Commit-time callbacks run, then the real database worker drains the task queue."""

    class Deliver:
        def __enter__(self):
            self._ctx = django_capture_on_commit_callbacks(execute=True)
            return self._ctx.__enter__()

        def __exit__(self, *exc):
            self._ctx.__exit__(*exc)
            if exc[0] is None:
                run_worker()

    return Deliver


def set_stock(product, stock):
    product.stock = stock
    product.save()


def test_crossing_below_threshold_opens_one_alert_and_sends_the_seed_email(deliver):
    product = ProductFactory(name="Laptop", stock=10)
    with deliver():
        set_stock(product, 4)
    alert = StockAlert.objects.get()
    assert (alert.stock, alert.threshold, alert.is_open) == (4, 5, True)
    assert alert.delivery_status == DeliveryStatus.SENT and alert.attempts == 1
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert message.subject == "Low Stock Alert: Laptop"
    assert message.body == "Only 4 units remaining"
    assert message.to == ["manager@company.com"]


def test_further_drops_in_the_same_episode_send_nothing(deliver):
    product = ProductFactory(stock=10)
    with deliver():
        set_stock(product, 4)
    with deliver():
        set_stock(product, 2)
        set_stock(product, 0)
    assert StockAlert.objects.count() == 1
    assert len(mail.outbox) == 1


def test_restock_resolves_and_the_next_crossing_opens_a_new_episode(deliver):
    product = ProductFactory(stock=10)
    with deliver():
        set_stock(product, 3)
    with deliver():
        set_stock(product, 5)  # at the threshold is not low
    first = StockAlert.objects.get()
    assert first.resolved_at is not None
    with deliver():
        set_stock(product, 1)
    assert StockAlert.objects.count() == 2
    assert StockAlert.objects.filter(resolved_at__isnull=True).get().stock == 1
    assert [m.body for m in mail.outbox] == ["Only 3 units remaining", "Only 1 units remaining"]


def test_product_created_below_threshold_opens_an_alert(deliver):
    with deliver():
        Product.objects.create(sku="N-1", name="New", price=Decimal("1.00"), stock=2)
    assert StockAlert.objects.get().sku == "N-1"
    assert len(mail.outbox) == 1


def test_threshold_change_can_open_an_alert(deliver):
    product = ProductFactory(stock=8)
    with deliver():
        product.low_stock_threshold = 10
        product.save()
    assert StockAlert.objects.get().threshold == 10


def test_rolled_back_transaction_produces_no_alert_and_no_email(deliver):
    product = ProductFactory(stock=10)
    with deliver() as callbacks, pytest.raises(RuntimeError), transaction.atomic():
        set_stock(product, 1)
        raise RuntimeError("abort")
    assert callbacks == []
    assert StockAlert.objects.count() == 0
    assert len(mail.outbox) == 0


def test_alert_is_only_enqueued_after_commit(django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    product = ProductFactory(stock=10)
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        set_stock(product, 1)
    assert DBTaskResult.objects.count() == 0  # nothing queued before commit
    for callback in callbacks:
        callback()
    assert DBTaskResult.objects.count() == 1


def test_bulk_paths_open_and_resolve_alerts(deliver):
    a, _b = ProductFactory(sku="A", stock=10), ProductFactory(sku="B", stock=10)
    with deliver():
        Product.objects.filter(sku__in=["A", "B"]).update(stock=F("stock") - 8)
    assert set(StockAlert.objects.values_list("sku", flat=True)) == {"A", "B"}
    a.refresh_from_db()
    a.stock = 20
    with deliver():
        Product.objects.bulk_update([a], ["stock"])
    assert StockAlert.objects.get(sku="A").resolved_at is not None
    with deliver():
        Product.objects.bulk_create(
            [Product(sku="B", name="b", price=Decimal("1"), stock=1)],
            update_conflicts=True,
            unique_fields=["sku"],
            update_fields=["stock"],
        )
    assert StockAlert.objects.filter(sku="B").count() == 1  # still the same episode
    assert len(mail.outbox) == 2


def test_database_allows_only_one_open_alert_per_product():
    product = ProductFactory(stock=1)
    assert StockAlert.objects.filter(product=product, resolved_at__isnull=True).count() == 1
    with pytest.raises(IntegrityError), transaction.atomic():
        StockAlert.objects.create(
            product=product,
            sku=product.sku,
            name=product.name,
            stock=1,
            threshold=5,
            opened_at=timezone.now(),
        )


def test_deleting_a_product_closes_its_open_alert_but_keeps_it():
    product = ProductFactory(stock=1)
    product.delete()
    alert = StockAlert.objects.get()
    assert alert.product is None and alert.resolved_at is not None and alert.sku == product.sku


def test_reconciling_again_keeps_the_one_open_alert(django_capture_on_commit_callbacks):
    from app.services.alerts import reconcile_alerts

    product = ProductFactory(stock=1)
    with django_capture_on_commit_callbacks() as callbacks:
        assert reconcile_alerts([product]) == []  # already open: nothing new, nothing to send
    assert callbacks == []
    assert StockAlert.objects.filter(product=product).count() == 1
