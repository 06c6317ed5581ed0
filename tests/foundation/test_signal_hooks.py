"""Receivers users connect see every write path; muting restores them even on error."""

from decimal import Decimal

import pytest
from django.db.models import F, Sum
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.dispatch import receiver

from app.models import Product, StockMovement
from app.signals import muted
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


class Recorder:
    def __init__(self):
        self.calls = []

    def __call__(self, sender, instance, **kwargs):
        signal = kwargs["signal"]
        name = {
            pre_save: "pre_save",
            post_save: "post_save",
            pre_delete: "pre_delete",
            post_delete: "post_delete",
        }[signal]
        self.calls.append(
            (name, instance.sku, kwargs.get("created"), instance.price, instance.stock)
        )


@pytest.fixture
def recorder():
    rec = Recorder()
    for signal in (pre_save, post_save, pre_delete, post_delete):
        signal.connect(rec, sender=Product, dispatch_uid=f"test-recorder-{signal!r}")
    yield rec
    for signal in (pre_save, post_save, pre_delete, post_delete):
        signal.disconnect(rec, sender=Product, dispatch_uid=f"test-recorder-{signal!r}")


def test_connected_receiver_is_called_for_every_write_path(recorder):
    product = Product.objects.create(sku="A", name="a", price=Decimal("1.00"), stock=10)
    product.price = Decimal("2.00")
    product.save()
    Product.objects.filter(sku="A").update(stock=F("stock") - 1)
    product.refresh_from_db()
    product.price = Decimal("3.00")
    Product.objects.bulk_update([product], ["price"])
    Product.objects.bulk_create([Product(sku="B", name="b", price=Decimal("5.00"), stock=5)])
    Product.objects.bulk_create(
        [Product(sku="B", name="b", price=Decimal("6.00"), stock=5)],
        update_conflicts=True,
        unique_fields=["sku"],
        update_fields=["price"],
    )
    Product.objects.filter(sku="B").delete()
    assert recorder.calls == [
        ("pre_save", "A", None, Decimal("1.00"), 10),
        ("post_save", "A", True, Decimal("1.00"), 10),
        ("pre_save", "A", None, Decimal("2.00"), 10),
        ("post_save", "A", False, Decimal("2.00"), 10),
        ("pre_save", "A", None, Decimal("2.00"), 9),
        ("post_save", "A", False, Decimal("2.00"), 9),
        ("pre_save", "A", None, Decimal("3.00"), 9),
        ("post_save", "A", False, Decimal("3.00"), 9),
        ("pre_save", "B", None, Decimal("5.00"), 5),
        ("post_save", "B", True, Decimal("5.00"), 5),
        ("pre_save", "B", None, Decimal("6.00"), 5),
        ("post_save", "B", False, Decimal("6.00"), 5),
        ("pre_delete", "B", None, Decimal("6.00"), 5),
        ("post_delete", "B", None, Decimal("6.00"), 5),
    ]


def test_pre_save_receiver_can_edit_the_instance_being_saved_on_bulk_paths():
    def add_vat(sender, instance, **kwargs):
        instance.name = instance.name.upper()

    ProductFactory(sku="A", name="lower")
    pre_save.connect(add_vat, sender=Product, dispatch_uid="test-upper")
    try:
        Product.objects.filter(sku="A").update(name="changed")
    finally:
        pre_save.disconnect(dispatch_uid="test-upper", sender=Product)
    assert Product.objects.get(sku="A").name == "CHANGED"


def test_receiver_decorator_and_disconnect():
    calls = []

    @receiver(post_save, sender=Product, dispatch_uid="test-decorated")
    def on_saved(sender, instance, created, **kwargs):
        calls.append((instance.sku, created))

    ProductFactory(sku="A")
    assert post_save.disconnect(on_saved, sender=Product, dispatch_uid="test-decorated")
    ProductFactory(sku="B")
    assert calls == [("A", True)]


def test_muted_receiver_is_restored_even_when_the_block_fails(recorder):
    with (
        pytest.raises(ValueError),
        muted(
            post_save, recorder, sender=Product, dispatch_uid=f"test-recorder-{post_save!r}"
        ) as was_connected,
    ):
        assert was_connected
        ProductFactory(sku="A")
        raise ValueError("import failed")
    assert [c[0] for c in recorder.calls] == ["pre_save"]
    ProductFactory(sku="B")
    assert [c[0] for c in recorder.calls][-2:] == ["pre_save", "post_save"]


def test_fixture_loading_writes_no_history_alerts_or_ledger(tmp_path):
    from django.core.management import call_command

    fixture = tmp_path / "products.json"
    fixture.write_text(
        '[{"model": "app.product", "pk": 900, "fields": {"sku": "FX-1", "name": "Fixture", '
        '"price": "3.00", "stock": 1, "low_stock_threshold": 5, '
        '"created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z"}}]'
    )
    call_command("loaddata", str(fixture), verbosity=0)
    call_command("loaddata", str(fixture), verbosity=0)
    product = Product.objects.get(sku="FX-1")
    assert product.stock_alerts.count() == 0
    assert product.price_history.count() == 0
    assert product.stock_movements.count() == 0


def test_stock_always_equals_the_sum_of_its_ledger():
    product = ProductFactory(stock=10)
    product.stock = 4
    product.save()
    Product.objects.filter(pk=product.pk).update(stock=F("stock") + 6)
    product.refresh_from_db()
    product.stock = 7
    Product.objects.bulk_update([product], ["stock"])
    total = StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"]
    assert total == Product.objects.get(pk=product.pk).stock == 7
    assert list(
        StockMovement.objects.filter(product=product)
        .order_by("id")
        .values_list("delta", "stock_after")
    ) == [
        (10, 10),
        (-6, 4),
        (6, 10),
        (-3, 7),
    ]


def test_live_receivers_reads_what_a_send_would_call():
    """``app.signals.live_receivers`` is the one reader of Django's private
    ``Signal._live_receivers``: synchronous and asynchronous receivers apart, only those
    of the sender, none that was garbage-collected or disconnected."""
    import gc

    from django.dispatch import Signal

    from app.signals import live_receivers

    signal = Signal()

    def on_product(sender, **kwargs): ...

    async def on_product_async(sender, **kwargs): ...

    def on_other(sender, **kwargs): ...

    def dies(sender, **kwargs): ...

    signal.connect(on_product, sender=Product)
    signal.connect(on_product_async, sender=Product)
    signal.connect(on_other, sender=StockMovement)
    signal.connect(dies, sender=Product)  # weak: gone once collected
    del dies
    gc.collect()
    assert live_receivers(signal, Product) == ([on_product], [on_product_async])
    signal.disconnect(on_product, sender=Product)
    assert live_receivers(signal, Product) == ([], [on_product_async])
    assert live_receivers(signal, StockMovement) == ([on_other], [])
