"""One plain test per defect the differential test (``test_differential.py``) found.

Each was seen failing before its fix. Every test checks the row, and the tracking the
write must leave: price history, the stock ledger summing to the stock, the alert state.
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import F, Sum

from app.models import DeletionAudit, PriceHistory, Product, StockAlert, StockMovement
from tests.conformance.plainapp.models import PlainProduct, ProductProxy

pytestmark = pytest.mark.django_db


def make(sku: str = "R-1", price: str = "10.00", stock: int = 10, threshold: int = 2) -> Product:
    return Product.objects.create(
        sku=sku, name="Regression", price=Decimal(price), stock=stock, low_stock_threshold=threshold
    )


def history(product: Product) -> list[tuple[Decimal, Decimal]]:
    rows = PriceHistory.objects.filter(product=product).order_by("id")
    return list(rows.values_list("old_price", "new_price"))


def ledger(product: Product) -> int:
    return StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"] or 0


def assert_tracked(product: Product) -> None:
    """Stock equals the ledger; an open alert exactly when stock < threshold."""
    row = Product.objects.get(pk=product.pk)
    assert ledger(row) == row.stock
    is_open = StockAlert.objects.filter(product=row, resolved_at__isnull=True).exists()
    assert is_open == (row.stock < row.low_stock_threshold)


# --- save() ------------------------------------------------------------------------------


def test_save_after_refresh_from_db_is_not_lost():
    """The issue's first example: refresh_from_db() did not update the loaded snapshot, so
    setting the price back to the loaded value looked like no change and was not written."""
    p = make(price="10.00")
    Product.objects.filter(pk=p.pk).update(price=Decimal("12.00"))  # another writer
    p.refresh_from_db()
    p.price = Decimal("10.00")
    p.save()
    assert Product.objects.get(pk=p.pk).price == Decimal("10.00")
    assert history(p) == [
        (Decimal("10.00"), Decimal("12.00")),
        (Decimal("12.00"), Decimal("10.00")),
    ]


def test_f_expression_assigned_on_the_instance():
    """The issue's second example: F() values raised ValidationError in pre_save."""
    p = make(price="10.00", stock=3)
    p.stock = F("stock") - 1
    p.price = F("price") * 2
    p.save()
    row = Product.objects.get(pk=p.pk)
    assert (row.stock, row.price) == (2, Decimal("20.00"))
    assert history(p) == [(Decimal("10.00"), Decimal("20.00"))]
    assert list(
        StockMovement.objects.filter(product=p).order_by("id").values_list("delta", flat=True)
    ) == [3, -1]
    assert_tracked(p)
    # As with plain Django, the attribute still holds the expression: saving again applies it.
    assert hasattr(p.stock, "resolve_expression")
    p.save()
    assert Product.objects.get(pk=p.pk).stock == 1
    assert_tracked(p)


def test_save_after_only_writes_the_assigned_deferred_field():
    """A field deferred by only() and then assigned was missing from the snapshot, so the
    narrowed save() dropped it."""
    p = make(stock=10)
    narrow = Product.objects.only("sku", "price").get(pk=p.pk)
    narrow.stock = 1
    narrow.save()
    assert Product.objects.get(pk=p.pk).stock == 1
    assert_tracked(p)


def test_retry_after_rollback_is_not_lost():
    """A save() rolled back by its transaction still updated the snapshot; retrying the
    same save() then looked like no change."""
    p = make(price="10.00")
    p.price = Decimal("20.00")
    with pytest.raises(RuntimeError), transaction.atomic():
        p.save()
        raise RuntimeError("rolled back")
    p.save()
    assert Product.objects.get(pk=p.pk).price == Decimal("20.00")
    assert history(p) == [(Decimal("10.00"), Decimal("20.00"))]


def test_stale_instance_keeps_its_documented_narrow_save():
    """The one deviation kept on purpose (README): a stale instance writes only the fields
    it changed; the ledger and the alert follow the stored stock."""
    p = make(stock=10, threshold=5)
    stale = Product.objects.get(pk=p.pk)
    fresh = Product.objects.get(pk=p.pk)
    fresh.stock = 1
    fresh.save()
    stale.name = "Renamed"
    stale.save()
    row = Product.objects.get(pk=p.pk)
    assert (row.name, row.stock) == ("Renamed", 1)
    assert_tracked(p)


def test_save_of_an_instance_whose_row_was_deleted_inserts_it_again():
    """The narrowed save() passed update_fields, so Django raised "did not affect any rows"
    where plain Django inserts the row again."""
    p = make(price="10.00", stock=4)
    Product.objects.get(pk=p.pk).delete()
    p.price = Decimal("11.00")
    p.save()
    row = Product.objects.get(pk=p.pk)
    assert (row.price, row.stock) == (Decimal("11.00"), 4)
    assert history(p) == []  # a creation, not a price change
    assert_tracked(p)


def test_save_after_delete_creates_a_new_row():
    """delete() clears the primary key; the narrowed save() then asked Django to update a
    row without one (ValueError) where plain Django inserts."""
    p = make(stock=4)
    p.delete()
    p.save()
    assert Product.objects.filter(sku="R-1").count() == 1
    assert_tracked(p)


# --- bulk_create ---------------------------------------------------------------------------


def stored(model) -> list[tuple]:
    return list(model._base_manager.order_by("sku").values_list("sku", "name", "price", "stock"))


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_create_ignore_conflicts_skips_a_duplicate_within_the_batch(model):
    """Product split off known conflicts and inserted the rest without ignore_conflicts, so
    two new objects with one SKU raised IntegrityError; Django inserts the first."""
    objs = [
        model(sku="D-1", name="First", price=Decimal("1.00"), stock=3),
        model(sku="D-1", name="Second", price=Decimal("2.00"), stock=4),
    ]
    model.objects.bulk_create(objs, ignore_conflicts=True)
    assert stored(model) == [("D-1", "First", Decimal("1.00"), 3)]
    if model is Product:
        assert_tracked(Product.objects.get(sku="D-1"))


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_create_update_conflicts_refuses_an_invalid_proposed_row(model):
    """The database checks the proposed row of an upsert even where it conflicts; Product
    updated the existing row itself and so accepted a negative stock Django refuses."""
    model.objects.create(sku="U-1", name="Old", price=Decimal("1.00"), stock=3)
    with pytest.raises(IntegrityError), transaction.atomic():
        model.objects.bulk_create(
            [model(sku="U-1", name="New", price=Decimal("2.00"), stock=-1)],
            update_conflicts=True,
            unique_fields=["sku"],
            update_fields=["name", "price"],
        )
    assert stored(model) == [("U-1", "Old", Decimal("1.00"), 3)]


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_create_ignore_conflicts_with_an_invalid_row_behaves_as_django(model):
    """SQLite's INSERT OR IGNORE drops rows failing any constraint, PostgreSQL's ON CONFLICT
    DO NOTHING only unique conflicts: Product now runs Django's statement, so it does the
    same on each database (it raised on SQLite before)."""
    objs = [
        model(sku="I-1", name="Bad", price=Decimal("1.00"), stock=-1),
        model(sku="I-2", name="Good", price=Decimal("1.00"), stock=2),
    ]
    if connection.vendor == "sqlite":
        model.objects.bulk_create(objs, ignore_conflicts=True)
        assert stored(model) == [("I-2", "Good", Decimal("1.00"), 2)]
        if model is Product:
            assert_tracked(Product.objects.get(sku="I-2"))
    else:
        with pytest.raises(IntegrityError), transaction.atomic():
            model.objects.bulk_create(objs, ignore_conflicts=True)
        assert stored(model) == []


# --- QuerySet.update() ----------------------------------------------------------------------


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_update_of_a_values_queryset(model):
    """update() read the rows through the queryset itself, so values() gave dicts and the
    write failed with AttributeError."""
    model.objects.create(sku="V-1", name="V", price=Decimal("1.00"), stock=3)
    assert model.objects.filter(sku="V-1").values("sku").update(price=Decimal("2.00")) == 1
    assert stored(model) == [("V-1", "V", Decimal("2.00"), 3)]
    if model is Product:
        assert history(Product.objects.get()) == [(Decimal("1.00"), Decimal("2.00"))]


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_update_of_a_distinct_queryset(model):
    """The locking read ran the queryset with FOR UPDATE, which PostgreSQL refuses with
    DISTINCT (NotSupportedError); Django's UPDATE does not care."""
    model.objects.create(sku="W-1", name="W", price=Decimal("1.00"), stock=3)
    assert model.objects.filter(stock__gte=1).distinct().update(stock=F("stock") - 1) == 1
    assert stored(model) == [("W-1", "W", Decimal("1.00"), 2)]
    if model is Product:
        assert_tracked(Product.objects.get())


# --- bulk_update() --------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_update_with_f_expressions(model):
    """Django's bulk_update() accepts expressions; Product's sent them through
    normalize() (ValidationError) or tried to encode them (TypeError)."""
    obj = model.objects.create(sku="E-1", name="E", price=Decimal("10.00"), stock=3)
    obj.stock = F("stock") + 2
    obj.price = F("price") * 2
    assert model.objects.bulk_update([obj], ["stock", "price"]) == 1
    assert stored(model) == [("E-1", "E", Decimal("20.00"), 5)]
    if model is Product:
        assert history(obj) == [(Decimal("10.00"), Decimal("20.00"))]
        assert_tracked(obj)
    assert hasattr(obj.stock, "resolve_expression")  # left on the instance, as Django does


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_update_with_two_instances_of_one_row_takes_the_first(model):
    """Django's CASE WHEN pk = ... takes the first instance of a row; Product wrote both
    (count 2, and on PostgreSQL an arbitrary one of them)."""
    row = model.objects.create(sku="T-1", name="T", price=Decimal("1.00"), stock=3)
    first, second = model.objects.get(pk=row.pk), model.objects.get(pk=row.pk)
    first.stock, second.stock = 7, 9
    assert model.objects.bulk_update([first, second], ["stock"]) == 1
    assert stored(model) == [("T-1", "T", Decimal("1.00"), 7)]
    if model is Product:
        assert_tracked(row)


def test_bulk_update_does_not_take_unwritten_changes_for_stored():
    """After bulk_update(objs, ["price"]) an instance's other assigned fields were taken as
    stored, so a later save() skipped them (lost write)."""
    p = make(stock=10)
    p.name = "Changed"
    p.price = Decimal("11.00")
    Product.objects.bulk_update([p], ["price"])
    p.save()
    assert Product.objects.get(pk=p.pk).name == "Changed"


# --- proxy models ---------------------------------------------------------------------------


def test_writes_through_a_proxy_are_tracked():
    """A proxy sends itself as the signals' sender, so the project's receivers (connected
    for Product) never ran: no ledger row, no history, no alert, and an open alert left
    behind when the product was deleted."""
    p = ProductProxy.objects.create(
        sku="P-1", name="Proxy", price=Decimal("10.00"), stock=3, low_stock_threshold=5
    )
    assert_tracked(p)
    p.price = Decimal("12.00")
    p.stock = 8
    p.save()
    assert history(p) == [(Decimal("10.00"), Decimal("12.00"))]
    assert_tracked(p)
    p.stock = 1
    p.save()
    assert_tracked(p)
    ProductProxy.objects.get(pk=p.pk).delete()
    assert not StockAlert.objects.filter(resolved_at__isnull=True).exists()


# --- rounding -------------------------------------------------------------------------------


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_extra_decimal_places_are_rounded_as_plain_django_stores_them(model):
    """Product quantized half-even everywhere; plain Django on PostgreSQL stores what
    numeric rounds to (half away from zero): 10.005 became 10.00 instead of 10.01."""
    expected = Decimal("10.01") if connection.vendor == "postgresql" else Decimal("10.00")
    obj = model.objects.create(sku="X-1", name="X", price=Decimal("1.00"), stock=1)
    obj.price = Decimal("10.005")
    obj.save()
    model.objects.bulk_create([model(sku="X-2", name="X", price=Decimal("10.005"), stock=1)])
    model.objects.filter(sku="X-1").update(price=Decimal("10.005"))
    assert [price for _, _, price, _ in stored(model)] == [expected, expected]
    if model is Product:
        assert history(obj) == [(Decimal("1.00"), expected)]


# --- delete() -------------------------------------------------------------------------------


def test_delete_of_an_instance_holding_an_f_expression():
    """save() leaves an F() on the instance (as Django does); deleting that instance then
    failed with TypeError while the deletion audit encoded the expression."""
    p = make(stock=5)
    p.stock = F("stock") - 1
    p.save()
    p.delete()
    assert not Product.objects.exists()
    assert DeletionAudit.objects.get().snapshot["stock"] == 4


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_update_counts_a_row_once_per_batch_as_django(model):
    """Django writes and counts a row once in each batch it appears in; Product ignored
    batch_size and counted it once."""
    obj = model.objects.create(sku="B-1", name="B", price=Decimal("1.00"), stock=3)
    obj.stock = 4
    assert model.objects.bulk_update([obj, obj, obj], ["stock"], batch_size=2) == 2
    assert stored(model) == [("B-1", "B", Decimal("1.00"), 4)]
    if model is Product:
        assert_tracked(obj)


# --- tracked fields a write leaves out --------------------------------------------------------


def test_save_with_update_fields_follows_the_stored_threshold():
    """The alert check took the instance's unsaved threshold for the stored one: stock
    raised to the stored threshold left the alert open."""
    p = make(stock=2, threshold=5)
    p.stock = 5
    p.low_stock_threshold = 2  # assigned, not saved
    p.save(update_fields=["stock"])
    assert_tracked(p)


def test_bulk_update_follows_the_stored_threshold():
    p = make(stock=10, threshold=5)
    p.stock = 3
    p.low_stock_threshold = 1  # assigned, not written by this bulk_update
    Product.objects.bulk_update([p], ["stock"])
    assert_tracked(p)
    assert p.low_stock_threshold == 1  # the instance keeps its own value


def test_bulk_update_with_an_f_expression_in_a_field_it_does_not_write():
    """The alert check compared the F() left in stock with the threshold (TypeError)."""
    p = make(stock=10, threshold=5)
    p.stock = F("stock") - 3
    p.low_stock_threshold = 8
    Product.objects.bulk_update([p], ["low_stock_threshold"])
    assert_tracked(p)


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_bulk_update_of_a_deferred_field_of_a_deleted_row(model):
    """Django reads each object's values before writing, so a deferred field of a deleted
    row raises DoesNotExist; Product skipped the row silently."""
    row = model.objects.create(sku="G-1", name="G", price=Decimal("1.00"), stock=3)
    narrow = model.objects.only("sku").get(pk=row.pk)
    row.delete()
    with pytest.raises(model.DoesNotExist):
        model.objects.bulk_update([narrow], ["stock"])


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_delete_of_a_narrow_instance_whose_row_is_gone(model):
    """The deletion audit loaded each deferred field through the instance, which raised
    DoesNotExist for a row deleted meanwhile; Django's delete() just deletes nothing."""
    row = model.objects.create(sku="H-1", name="H", price=Decimal("1.00"), stock=3)
    narrow = model.objects.only("sku").get(pk=row.pk)
    model.objects.filter(pk=row.pk).delete()
    assert narrow.delete()[0] == 0


@pytest.mark.parametrize("model", [Product, PlainProduct])
def test_save_of_a_narrow_instance_whose_row_is_gone(model):
    """pre_save loaded every deferred field to normalise it (one query each), which raised
    DoesNotExist for a deleted row where Django reports the save that hit no row."""
    row = model.objects.create(sku="K-1", name="K", price=Decimal("1.00"), stock=3)
    narrow = model.objects.defer("price", "stock").get(pk=row.pk)
    model.objects.filter(pk=row.pk).delete()
    narrow.name = "Renamed"
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        narrow.save(update_fields=["name"])


# --- found by the review of the merged change ----------------------------------------------


@pytest.mark.django_db
def test_save_with_a_new_primary_key_writes_every_field_to_that_row_as_django_does():
    a, b = make("A-1", "1.00", 1), make("B-1", "2.00", 2)
    product = Product.objects.get(pk=a.pk)
    product.pk, product.sku = b.pk, "C-1"
    product.save()
    row = Product.objects.get(pk=b.pk)
    assert (row.sku, row.price, row.stock) == ("C-1", Decimal("1.00"), 1)
    assert history(row) == [(Decimal("2.00"), Decimal("1.00"))]
    assert_tracked(row)
    assert_tracked(a)


@pytest.mark.django_db(transaction=True)
def test_an_error_of_a_later_save_is_not_hidden_by_an_earlier_missing_row():
    """A save(update_fields=...) of a deleted row fails as in Django; a later save that
    fails for another reason (a duplicate SKU) raises that error, as Django does, instead of
    being retried as the re-insert of a deleted row."""
    product = make("G-1")
    make("TAKEN")
    Product.objects.filter(pk=product.pk).delete()
    with pytest.raises(DatabaseError):
        product.save(update_fields=["price"])
    Product.objects.create(pk=product.pk, sku="G-1", name="again", price=Decimal("1.00"))
    product.refresh_from_db()
    product.sku = "TAKEN"
    with pytest.raises(IntegrityError):
        product.save()


@pytest.mark.django_db
def test_an_upsert_keyed_by_primary_key_is_refused_not_left_untracked():
    product = make("U-1")
    with pytest.raises(ValueError, match="keyed by 'sku'"):
        Product.objects.bulk_create(
            [Product(pk=product.pk, sku="U-2", name="n", price=Decimal("9.00"), stock=0)],
            update_conflicts=True,
            unique_fields=["pk"],
            update_fields=["price", "stock"],
        )
    assert Product.objects.get(pk=product.pk).price == Decimal("10.00")


@pytest.mark.django_db
def test_a_bulk_write_registers_a_commit_callback_per_batch_not_per_row():
    """Each written product's values are confirmed on commit: one shared callback for the
    rows of a bulk write, or a million-row upsert holds a million callbacks until commit."""
    with transaction.atomic():
        before = len(connection.run_on_commit)
        objs = Product.objects.bulk_create(
            [Product(sku=f"CB-{i}", name="Callback", price=Decimal(1), stock=9) for i in range(300)]
        )
        for obj in objs:
            obj.stock = 8
        Product.objects.bulk_update(objs, ["stock"])
        assert len(connection.run_on_commit) - before < 10
    objs[0].refresh_from_db()
    assert objs[0].stock == 8
