"""Deletion audit and the admin: evidence is kept and read-only."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import User

from app.models import DeletionAudit, PriceHistory, Product, StockAlert
from app.services.context import change_context
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_delete_writes_an_audit_row_with_snapshot_and_user():
    user = UserFactory()
    product = ProductFactory(sku="DEL-1", name="Old", price=Decimal("4.50"), stock=7)
    with change_context(user=user, source="api"):
        product.delete()
    audit = DeletionAudit.objects.get()
    assert audit.model_label == "app.Product" and audit.object_repr == "Old (DEL-1)"
    assert audit.snapshot["sku"] == "DEL-1" and audit.snapshot["price"] == "4.50"
    assert audit.snapshot["stock"] == 7 and "created_at" in audit.snapshot
    assert (audit.changed_by, audit.source) == (user, "api")


def test_queryset_delete_audits_every_row():
    ProductFactory(sku="X-1")
    ProductFactory(sku="X-2")
    Product.objects.filter(sku__startswith="X-").delete()
    assert sorted(DeletionAudit.objects.values_list("snapshot__sku", flat=True)) == ["X-1", "X-2"]


@pytest.fixture
def admin_client_logged(client):
    admin = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-1")
    client.force_login(admin)
    return client


def test_product_admin_search_and_low_stock_filter(admin_client_logged):
    ProductFactory(sku="LOW-1", name="Scarce", stock=1)
    ProductFactory(sku="OK-1", name="Plenty", stock=100)
    body = admin_client_logged.get("/admin/app/product/?low_stock=yes").content.decode()
    assert "LOW-1" in body and "OK-1" not in body
    body = admin_client_logged.get("/admin/app/product/?q=Plenty").content.decode()
    assert "OK-1" in body and "LOW-1" not in body


def test_product_admin_shows_history_inline_read_only(admin_client_logged):
    product = ProductFactory(sku="H-1", price=Decimal("1.00"))
    product.price = Decimal("2.00")
    product.save()
    body = admin_client_logged.get(f"/admin/app/product/{product.pk}/change/").content.decode()
    assert "Price history" in body and "2.00" in body
    assert 'name="price_history-0-new_price"' not in body  # shown, not editable


@pytest.mark.parametrize("model", ["pricehistory", "stockmovement", "deletionaudit", "stockalert"])
def test_history_and_audit_rows_cannot_be_added_changed_or_deleted(admin_client_logged, model):
    product = ProductFactory(stock=1)
    product.price = Decimal("99.00")
    product.save()
    product.delete()
    obj = {
        "pricehistory": PriceHistory,
        "stockalert": StockAlert,
        "deletionaudit": DeletionAudit,
        "stockmovement": __import__("app.models", fromlist=["StockMovement"]).StockMovement,
    }[model].objects.first()
    assert admin_client_logged.get(f"/admin/app/{model}/").status_code == 200
    assert admin_client_logged.get(f"/admin/app/{model}/add/").status_code == 403
    assert admin_client_logged.get(f"/admin/app/{model}/{obj.pk}/delete/").status_code == 403
    before = {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields}
    response = admin_client_logged.post(f"/admin/app/{model}/{obj.pk}/change/", {"sku": "HACKED"})
    assert response.status_code == 403
    obj.refresh_from_db()
    assert {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields} == before


def test_failed_alerts_can_be_requeued_from_the_admin(admin_client_logged):
    from app.models import DeliveryStatus

    ProductFactory(stock=1)
    alert = StockAlert.objects.get()
    StockAlert.objects.filter(pk=alert.pk).update(delivery_status=DeliveryStatus.FAILED, attempts=9)
    response = admin_client_logged.post(
        "/admin/app/stockalert/", {"action": "retry_delivery", "_selected_action": [alert.pk]}
    )
    assert response.status_code == 302
    alert.refresh_from_db()
    assert (alert.delivery_status, alert.attempts) == (DeliveryStatus.PENDING, 0)
