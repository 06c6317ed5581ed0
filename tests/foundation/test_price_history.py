"""Price history: exactly one row per real price change, on every write path."""

import threading
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.test.utils import CaptureQueriesContext

from app.models import PriceHistory, Product
from app.services.context import change_context
from tests.factories import ProductFactory, UserFactory

pytestmark = pytest.mark.django_db


def history(sku="SKU-A"):
    return list(
        PriceHistory.objects.filter(sku=sku).order_by("id").values_list("old_price", "new_price")
    )


@pytest.fixture
def product():
    return ProductFactory(sku="SKU-A", price=Decimal("10.00"), stock=50)


def test_creation_and_unchanged_saves_write_no_history(product):
    product.save()
    product.name = "renamed"
    product.save()
    product.price = "10.0"  # same value, other spelling
    product.save()
    assert history() == []


def test_save_records_old_and_new_price_correctly(product):
    product.price = Decimal("12.50")
    product.save()
    product.price = Decimal("11.00")
    product.save()
    assert history() == [(Decimal("10.00"), Decimal("12.50")), (Decimal("12.50"), Decimal("11.00"))]


def test_save_knows_the_old_price_without_a_select(product):
    product.save()  # warm per-process caches (e.g. the webhook subscription set)
    product = Product.objects.get(pk=product.pk)
    product.price = Decimal("12.00")
    with CaptureQueriesContext(connection) as ctx:
        product.save()
    selects = [
        q["sql"] for q in ctx.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")
    ]
    assert selects == []
    assert history() == [(Decimal("10.00"), Decimal("12.00"))]


def test_stale_instance_still_records_the_true_old_price(product):
    first = Product.objects.get(pk=product.pk)
    second = Product.objects.get(pk=product.pk)
    first.price = Decimal("11.00")
    first.save()
    second.price = Decimal("12.00")  # loaded 10.00, but the row holds 11.00 now
    second.save()
    assert history() == [(Decimal("10.00"), Decimal("11.00")), (Decimal("11.00"), Decimal("12.00"))]


def test_stale_instance_does_not_overwrite_fields_it_did_not_change(product):
    stale = Product.objects.get(pk=product.pk)
    Product.objects.filter(pk=product.pk).update(stock=F("stock") - 20)
    stale.price = Decimal("9.00")
    stale.save()
    product.refresh_from_db()
    assert product.stock == 30


def test_history_is_written_in_the_same_transaction(product):
    with pytest.raises(RuntimeError), transaction.atomic():
        product.price = Decimal("99.00")
        product.save()
        raise RuntimeError("roll back")
    assert history() == []
    assert Product.objects.get(pk=product.pk).price == Decimal("10.00")


def test_queryset_update_with_value_and_expression(product):
    other = ProductFactory(sku="SKU-B", price=Decimal("20.00"))
    Product.objects.filter(sku__in=["SKU-A", "SKU-B"]).update(price=Decimal("15.00"))
    Product.objects.filter(sku="SKU-A").update(price=F("price") * Decimal("0.9"))
    Product.objects.filter(sku="SKU-A").update(price=Decimal("13.50"))  # unchanged: no row
    assert history("SKU-A") == [
        (Decimal("10.00"), Decimal("15.00")),
        (Decimal("15.00"), Decimal("13.50")),
    ]
    assert history("SKU-B") == [(Decimal("20.00"), Decimal("15.00"))]
    other.refresh_from_db()
    assert other.price == Decimal("15.00")


def test_bulk_update_uses_current_database_values_as_old(product):
    stale = Product.objects.get(pk=product.pk)
    Product.objects.filter(pk=product.pk).update(price=Decimal("11.00"))
    stale.price = Decimal("12.00")
    assert Product.objects.bulk_update([stale], ["price"]) == 1
    assert history() == [(Decimal("10.00"), Decimal("11.00")), (Decimal("11.00"), Decimal("12.00"))]


def test_bulk_create_with_update_conflicts(product):
    Product.objects.bulk_create(
        [
            Product(sku="SKU-A", name="A v2", price=Decimal("8.00"), stock=3),
            Product(sku="SKU-NEW", name="New", price=Decimal("5.00"), stock=9),
        ],
        update_conflicts=True,
        unique_fields=["sku"],
        update_fields=["name", "price", "stock"],
    )
    assert history("SKU-A") == [(Decimal("10.00"), Decimal("8.00"))]
    assert history("SKU-NEW") == []
    assert Product.objects.get(sku="SKU-A").name == "A v2"
    assert Product.objects.get(sku="SKU-NEW").price == Decimal("5.00")


def test_plain_bulk_create_and_ignore_conflicts_write_no_history(product):
    Product.objects.bulk_create([Product(sku="SKU-C", name="C", price=Decimal("1.00"), stock=10)])
    Product.objects.bulk_create(
        [Product(sku="SKU-A", name="ignored", price=Decimal("1.00"), stock=10)],
        ignore_conflicts=True,
    )
    assert PriceHistory.objects.count() == 0
    assert Product.objects.get(sku="SKU-A").price == Decimal("10.00")
    assert Product.objects.get(sku="SKU-C").pk is not None


def test_admin_change_records_history_with_user_and_source(client, product):
    admin = User.objects.create_superuser("boss", "boss@example.com", "pw-for-tests-1")
    client.force_login(admin)
    response = client.post(
        f"/admin/app/product/{product.pk}/change/",
        {
            "sku": "SKU-A",
            "name": product.name,
            "price": "7.25",
            "stock": "50",
            "low_stock_threshold": "5",
            "price_history-TOTAL_FORMS": "0",
            "price_history-INITIAL_FORMS": "0",
            "stock_alerts-TOTAL_FORMS": "0",
            "stock_alerts-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    row = PriceHistory.objects.get(sku="SKU-A")
    assert (row.old_price, row.new_price) == (Decimal("10.00"), Decimal("7.25"))
    assert (row.changed_by, row.source) == (admin, "admin")


def test_change_context_attributes_user_and_source(product):
    user = UserFactory()
    with change_context(user=user, source="pipeline:42"):
        product.price = Decimal("3.00")
        product.save()
    row = PriceHistory.objects.get()
    assert (row.changed_by, row.source) == (user, "pipeline:42")
    product.price = Decimal("4.00")
    product.save()
    assert PriceHistory.objects.latest("id").source == "shell"


def test_context_does_not_leak_between_threads(product):
    user = UserFactory()
    seen = {}

    def other_thread():
        from app.services.context import current_change_context

        seen["ctx"] = current_change_context()

    with change_context(user=user, source="api"):
        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join()
    assert seen["ctx"].source == "shell" and seen["ctx"].user_id is None


def test_deleted_product_keeps_its_history(product):
    product.price = Decimal("11.00")
    product.save()
    product.delete()
    row = PriceHistory.objects.get()
    assert row.product is None and row.sku == "SKU-A"


def test_database_rejects_negative_price_and_stock(product):
    from django.db import IntegrityError

    for field, value in (("price", Decimal("-1.00")), ("stock", -1)):
        with pytest.raises(IntegrityError), transaction.atomic():
            Product.objects.filter(pk=product.pk).update(**{field: value})
    product.refresh_from_db()
    assert (product.price, product.stock) == (Decimal("10.00"), 50)
