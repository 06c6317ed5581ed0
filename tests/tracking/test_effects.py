"""One mechanism: an effect registered once (as ``AppConfig.ready()`` registers the
project's) sees every ORM write path and every pipeline step on both routes, with the
right before/after values.

The throwaway effect records what each change set says: kind, SKU and, for an update, each
field whose value before differs from its value after. Updates that changed nothing are
left out (``QuerySet.update`` writes every matched row; the SQL route skips such rows).
"""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync
from django.apps import apps
from django.db import connection, models
from django.db.models import Case, F, Value, When
from django.db.models.signals import post_init, pre_delete, pre_save
from django.test.utils import CaptureQueriesContext

from app.models import PriceHistory, Product
from app.pipelines.staged import STAGE
from app.tracking import effects
from app.tracking.changes import FIELDS
from app.utils.utils import process_pipeline

pytestmark = pytest.mark.django_db


class ProxyProduct(Product):
    class Meta:
        proxy = True
        app_label = "app"


def norm(name: str, value):
    if name == "price" and value is not None:
        return str(Decimal(value).quantize(Decimal("0.01")))
    return value


class Seen:
    """The throwaway effect: what it was given, as (kind, sku, changes)."""

    def __init__(self) -> None:
        self.changes: list[tuple] = []

    def __call__(self, changes, *, using: str) -> None:
        assert using == changes.using
        for change in changes.rows():
            after = {name: norm(name, change.get(name)) for name in FIELDS}
            if change.kind == "updated":
                diff = {}
                for name, old in change.before.items():
                    if norm(name, old) != after[name]:
                        diff[name] = (norm(name, old), after[name])
                if diff:
                    self.changes.append(("updated", after["sku"], diff))
            else:
                values = {name: after[name] for name in ("name", "price", "stock")}
                self.changes.append((change.kind, after["sku"], values))


@pytest.fixture(scope="module")
def registered():
    seen = Seen()
    effects.register("test.seen", seen)
    yield seen
    effects.unregister("test.seen")


@pytest.fixture
def seen(registered, db):
    Product.objects.bulk_create(
        [
            Product(sku="A", name="Alpha", price=Decimal("10.00"), stock=10, low_stock_threshold=5),
            Product(sku="B", name="Beta", price=Decimal("20.00"), stock=3, low_stock_threshold=5),
        ]
    )
    registered.changes.clear()
    return registered


def get(sku: str) -> Product:
    return Product.objects.get(sku=sku)


def save_price():
    p = get("A")
    p.price = Decimal("12.50")
    p.save()


def save_update_fields():
    p = get("A")
    p.stock, p.name = 4, "not written"
    p.save(update_fields=["stock"])


def save_f_expression():
    p = get("A")
    p.stock = F("stock") - 1
    p.save()


def update_f():
    Product.objects.filter(sku="A").update(stock=F("stock") + 5)


def update_case_when():
    Product.objects.update(
        price=Case(
            When(sku="B", then=Value(Decimal("7.00"))),
            default=F("price"),
            output_field=models.DecimalField(max_digits=12, decimal_places=2),
        )
    )


def bulk_update():
    a, b = get("A"), get("B")
    a.price, b.stock = Decimal("1.00"), 9
    Product.objects.bulk_update([a, b], ["price", "stock"])


def bulk_create_plain():
    Product.objects.bulk_create([Product(sku="N", name="New", price=Decimal("3.00"), stock=2)])


def bulk_create_ignore():
    Product.objects.bulk_create(
        [
            Product(sku="A", name="Dup", price=Decimal("99.00"), stock=1),
            Product(sku="N", name="New", price=Decimal("3.00"), stock=2),
        ],
        ignore_conflicts=True,
    )


def bulk_create_upsert():
    Product.objects.bulk_create(
        [
            Product(sku="A", name="Alpha", price=Decimal("11.00"), stock=10),
            Product(sku="N", name="New", price=Decimal("3.00"), stock=2),
        ],
        update_conflicts=True,
        update_fields=["price"],
        unique_fields=["sku"],
    )


def get_or_create():
    Product.objects.get_or_create(sku="A", defaults={"name": "x", "price": Decimal("1.00")})
    Product.objects.get_or_create(
        sku="N", defaults={"name": "New", "price": Decimal("3.00"), "stock": 2}
    )


def update_or_create():
    Product.objects.update_or_create(sku="A", defaults={"price": Decimal("13.00")})


def delete_one():
    get("A").delete()


def delete_queryset():
    Product.objects.filter(sku__in=["A", "B"]).delete()


def async_writes():
    async def run():
        p = await Product.objects.aget(sku="A")
        p.price = Decimal("14.00")
        await p.asave()
        await Product.objects.filter(sku="B").aupdate(stock=8)
        await Product.objects.abulk_create(
            [Product(sku="N", name="New", price=Decimal("3.00"), stock=2)]
        )

    async_to_sync(run)()


def proxy_save():
    p = ProxyProduct.objects.get(sku="A")
    p.price = Decimal("15.00")
    p.save()
    ProxyProduct.objects.filter(sku="B").update(stock=0)


NEW = ("created", "N", {"name": "New", "price": "3.00", "stock": 2})
A_DELETED = ("deleted", "A", {"name": "Alpha", "price": "10.00", "stock": 10})
B_DELETED = ("deleted", "B", {"name": "Beta", "price": "20.00", "stock": 3})

CASES = {
    "save": (save_price, [("updated", "A", {"price": ("10.00", "12.50")})]),
    "save update_fields": (save_update_fields, [("updated", "A", {"stock": (10, 4)})]),
    "save F()": (save_f_expression, [("updated", "A", {"stock": (10, 9)})]),
    "update F()": (update_f, [("updated", "A", {"stock": (10, 15)})]),
    "update Case/When": (update_case_when, [("updated", "B", {"price": ("20.00", "7.00")})]),
    "bulk_update": (
        bulk_update,
        [("updated", "A", {"price": ("10.00", "1.00")}), ("updated", "B", {"stock": (3, 9)})],
    ),
    "bulk_create": (bulk_create_plain, [NEW]),
    "bulk_create ignore_conflicts": (bulk_create_ignore, [NEW]),
    "bulk_create update_conflicts": (
        bulk_create_upsert,
        [NEW, ("updated", "A", {"price": ("10.00", "11.00")})],
    ),
    "get_or_create": (get_or_create, [NEW]),
    "update_or_create": (update_or_create, [("updated", "A", {"price": ("10.00", "13.00")})]),
    "delete": (delete_one, [A_DELETED]),
    "queryset delete": (delete_queryset, [A_DELETED, B_DELETED]),
    "asave, aupdate, abulk_create": (
        async_writes,
        [("updated", "A", {"price": ("10.00", "14.00")}), ("updated", "B", {"stock": (3, 8)}), NEW],
    ),
    "proxy model": (
        proxy_save,
        [("updated", "A", {"price": ("10.00", "15.00")}), ("updated", "B", {"stock": (3, 0)})],
    ),
}


@pytest.mark.parametrize(
    "case",
    list(CASES.values()),
    ids=list(CASES),
)
def test_an_effect_sees_every_orm_write_path(seen, case):
    write, expected = case
    write()
    assert sorted(seen.changes, key=repr) == sorted(expected, key=repr)


def user_pre_save(sender, instance, **kwargs):
    pass


def user_post_init(sender, instance, **kwargs):
    pass


SPEC = {
    "steps": [
        {
            "op": "upsert_products",
            "rows": [
                {"sku": "N", "name": "New", "price": "3.00", "stock": 7},
                {"sku": "A", "name": "Alpha One", "price": "10.00"},
            ],
        },
        {"op": "set_prices", "prices": {"A": "11.00", "B": "20.00"}},
        {"op": "adjust_prices", "select": {"sku_prefix": "B"}, "percent": "10"},
        {"op": "adjust_stock", "deltas": {"A": -8, "B": 4}},
        {"op": "set_stock", "stock": {"N": 1, "B": 7}},
        {"op": "delete_products", "skus": ["N"]},
    ]
}
SPEC_SEEN = [
    ("created", "N", {"name": "New", "price": "3.00", "stock": 7}),
    ("updated", "A", {"name": ("Alpha", "Alpha One")}),
    ("updated", "A", {"price": ("10.00", "11.00")}),
    ("updated", "B", {"price": ("20.00", "22.00")}),
    ("updated", "A", {"stock": (10, 2)}),
    ("updated", "B", {"stock": (3, 7)}),
    ("updated", "N", {"stock": (7, 1)}),
    ("deleted", "N", {"name": "New", "price": "3.00", "stock": 1}),
]


@pytest.mark.parametrize(
    "route", ["sql route", "object route (bulk forms)", "object route (per-object signals)"]
)
def test_an_effect_sees_every_pipeline_step_on_both_routes(seen, route):
    if route == "object route (bulk forms)":  # instances needed, the adapters alone listen
        post_init.connect(user_post_init, sender=Product, dispatch_uid="test.effects.init")
    elif route == "object route (per-object signals)":  # of saves, and of deletes
        pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.effects.pre_save")
        pre_delete.connect(user_pre_save, sender=Product, dispatch_uid="test.effects.pre_delete")
    try:
        with CaptureQueriesContext(connection) as queries:
            result = process_pipeline(SPEC)
    finally:
        post_init.disconnect(sender=Product, dispatch_uid="test.effects.init")
        pre_save.disconnect(sender=Product, dispatch_uid="test.effects.pre_save")
        pre_delete.disconnect(sender=Product, dispatch_uid="test.effects.pre_delete")
    assert result["status"] == "succeeded", result
    staged = sum(STAGE in q["sql"] for q in queries.captured_queries)
    assert (staged > 0) == (route == "sql route")
    assert seen.changes == SPEC_SEEN


def test_ready_registers_the_effects_once_in_order_and_muting_one_keeps_the_order():
    order = ["levels", "history", "webhooks", "alerts", "cache"]
    assert [name for name, _ in effects.registered()][:5] == order
    apps.get_app_config("app").ready()  # a second call changes nothing
    assert [name for name, _ in effects.registered()][:5] == order
    with effects.muted("webhooks") as was_registered:
        assert was_registered
        assert [name for name, _ in effects.registered()][:4] == [
            "levels",
            "history",
            "alerts",
            "cache",
        ]
    assert [name for name, _ in effects.registered()][:5] == order


def test_a_muted_effect_is_skipped_by_both_routes(seen):
    with effects.muted("history"):
        p = get("A")
        p.price = Decimal("19.00")
        p.save()
        process_pipeline({"steps": [{"op": "set_prices", "prices": {"B": "21.00"}}]})
    assert not PriceHistory.objects.exists()
    assert {(kind, sku) for kind, sku, _ in seen.changes} == {("updated", "A"), ("updated", "B")}


@pytest.mark.parametrize("batched", [False, True], ids=["alone", "in-a-batch"])
def test_a_change_goes_through_the_effects_registered_when_it_was_made(db, batched):
    """``effects.muted`` leaves out the effect of the changes made in its block, and of
    those alone, however late their batch runs them."""
    from contextlib import nullcontext

    from django.db import transaction

    from app.tracking.batch import collecting_changes

    with transaction.atomic(), collecting_changes() if batched else nullcontext():
        product = Product.objects.create(sku="M-1", name="M", price=Decimal("1.00"), stock=5)
        product.price = Decimal("2.00")
        product.save()  # before the block: its history is written
        with effects.muted("history"):
            product.price = Decimal("3.00")
            product.save()  # in it: none
        product.price = Decimal("4.00")
        product.save()
    history = PriceHistory.objects.filter(product=product).order_by("pk")
    assert [(h.old_price, h.new_price) for h in history] == [
        (Decimal("1.00"), Decimal("2.00")),
        (Decimal("3.00"), Decimal("4.00")),
    ]
