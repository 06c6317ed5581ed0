"""Deleting a stale instance whose row someone else deleted already: Django deletes nothing
(``delete()`` returns 0) and still sends ``pre_delete`` and ``post_delete``, as it does; the
project records nothing for it (no deletion audit, no change set, so no ``product.deleted``
event), as the set-based route records only the rows it deleted."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db.models.signals import post_delete, pre_delete

from app.models import DeletionAudit, Product, StockAlert, WebhookDelivery
from app.tracking import effects
from app.webhooks import outbox, services
from tests.webhooks.conftest import SECRET

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def kinds():
    """The kind of each change row the change pipeline hands its effects."""
    seen: list[tuple[str, str]] = []

    def record(changes, *, using: str) -> None:
        seen.extend((change.kind, change.get("sku")) for change in changes.rows())

    effects.register("test.stale_delete", record)
    yield seen
    effects.unregister("test.stale_delete")


@pytest.fixture
def signals():
    sent: list[tuple[str, int]] = []

    def pre(sender, instance, **kwargs):
        sent.append(("pre_delete", instance.pk))

    def post(sender, instance, **kwargs):
        sent.append(("post_delete", instance.pk))

    pre_delete.connect(pre, sender=Product, dispatch_uid="test.stale.pre")
    post_delete.connect(post, sender=Product, dispatch_uid="test.stale.post")
    yield sent
    pre_delete.disconnect(sender=Product, dispatch_uid="test.stale.pre")
    post_delete.disconnect(sender=Product, dispatch_uid="test.stale.post")


def test_a_stale_instance_deleted_again_records_nothing(kinds, signals):
    outbox.forget_subscriptions()
    services.create_subscription(
        url="http://127.0.0.1:9/", events=["product.deleted"], secret=SECRET
    )
    product = Product.objects.create(
        sku="GONE-1", name="Gone", price=Decimal("5.00"), stock=1, low_stock_threshold=5
    )
    assert StockAlert.objects.filter(product=product, resolved_at__isnull=True).count() == 1
    stale = Product.objects.get(pk=product.pk)
    pk = product.pk

    assert product.delete()[1]["app.Product"] == 1
    assert DeletionAudit.objects.filter(object_pk=str(pk)).count() == 1
    assert kinds == [("created", "GONE-1"), ("deleted", "GONE-1")]
    deleted_events = WebhookDelivery.objects.filter(event_type="product.deleted")
    assert deleted_events.count() == 1
    resolved_at = StockAlert.objects.get(sku="GONE-1").resolved_at
    assert resolved_at is not None

    signals.clear()
    assert stale.delete() == (0, {})  # Django: nothing deleted, no error...
    assert signals == [("pre_delete", pk), ("post_delete", pk)]  # ...and both signals sent
    assert DeletionAudit.objects.filter(object_pk=str(pk)).count() == 1
    assert kinds == [("created", "GONE-1"), ("deleted", "GONE-1")]
    assert deleted_events.count() == 1
    assert StockAlert.objects.get(sku="GONE-1").resolved_at == resolved_at
    outbox.forget_subscriptions()


def test_a_current_instance_is_audited_once(kinds):
    product = Product.objects.create(sku="HERE-1", name="Here", price=Decimal("5.00"), stock=9)
    assert product.delete()[1]["app.Product"] == 1
    assert DeletionAudit.objects.filter(object_repr__contains="HERE-1").count() == 1
    assert kinds == [("created", "HERE-1"), ("deleted", "HERE-1")]
