"""Property: a pipeline has exactly the effects of applying each change with save()/delete().

Hypothesis generates small random pipelines. Each is applied twice from the same fresh
state (each route in its own transaction, rolled back afterwards): once through
``process_pipeline``, once by a plain reference that loads each product and calls
``save()``/``delete()`` one at a time. Compared: final products, price history, stock
ledger, alerts, deletion audit rows, and what user-connected ``pre_save``/``post_save``/
``pre_delete``/``post_delete`` receivers saw (per product, in order, including a re-read of
the row from inside ``post_save``, as the seed's receiver did). Run twice: with that user
receiver connected (bulk writes dispatch per object) and without it (only the project's
receivers listen, so bulk writes use their set-based equivalents, ``app.tracking.adapters``,
and every step but ``upsert_products`` takes the SQL route, ``app.pipelines.staged``: the
test checks which route ran).
"""

from __future__ import annotations

import csv
import io
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import connection, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import (
    DeletionAudit,
    PriceHistory,
    Product,
    StockAlert,
    StockLevel,
    StockMovement,
)
from app.pipelines.staged import STAGE
from app.services.context import change_context
from app.tracking import adapters
from app.utils.utils import process_pipeline

pytestmark = pytest.mark.django_db

SKUS = ["A-1", "A-2", "B-1", "B-2", "C-1"]
prices = st.decimals(min_value=0, max_value=60, places=2).map(str)
stocks = st.integers(0, 12)
skus = st.sampled_from(SKUS)


@st.composite
def rows(draw):
    row = {
        "sku": draw(skus),
        "name": draw(st.sampled_from(["Alpha", "Beta"])),
        "price": draw(prices),
    }
    if draw(st.booleans()):
        row["stock"] = draw(stocks)
    if draw(st.booleans()):
        row["low_stock_threshold"] = draw(st.integers(0, 8))
    return row


def as_csv(items):
    out = io.StringIO()
    columns = ["sku", "name", "price", "stock", "low_stock_threshold"]
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    for row in items:
        writer.writerow([row.get(c, "") for c in columns])
    return out.getvalue()


@st.composite
def upsert(draw):
    items = draw(st.lists(rows(), min_size=1, max_size=4))
    if draw(st.booleans()):
        return {"op": "upsert_products", "rows": items}
    return {"op": "upsert_products", "csv": as_csv(items)}


select = st.one_of(
    st.builds(lambda s: {"skus": s}, st.lists(skus, min_size=1, max_size=3)),
    st.builds(lambda p: {"sku_prefix": p}, st.sampled_from(["A-", "B-", "Z-"])),
    st.just({"all": True}),
)
step = st.one_of(
    upsert(),
    st.builds(
        lambda d: {"op": "set_prices", "prices": d},
        st.dictionaries(skus, prices, min_size=1, max_size=3),
    ),
    st.builds(
        lambda s, p, r: {"op": "adjust_prices", "select": s, "percent": p, "round_to": r},
        select,
        st.sampled_from(["-100", "-50", "-12.5", "0", "10", "33.3"]),
        st.sampled_from(["0.01", "0.05", "1"]),
    ),
    st.builds(
        lambda d: {"op": "adjust_stock", "deltas": d},
        st.dictionaries(skus, st.integers(-10, 10), min_size=1, max_size=3),
    ),
    st.builds(
        lambda d: {"op": "set_stock", "stock": d},
        st.dictionaries(skus, stocks, min_size=1, max_size=3),
    ),
    st.builds(
        lambda s: {"op": "delete_products", "skus": s},
        st.lists(skus, min_size=1, max_size=2, unique=True),
    ),
)
initial = st.dictionaries(
    skus,
    st.tuples(prices, stocks, st.integers(0, 8)),
    min_size=0,
    max_size=len(SKUS),
)


class Failed(Exception):
    def __init__(self, step: int) -> None:
        self.step = step


def reference(spec: dict) -> None:
    """Apply the spec one object at a time with save()/delete(), failing like a pipeline would."""
    for index, s in enumerate(spec["steps"]):
        op = s["op"]

        def get(sku, index=index):
            product = Product.objects.filter(sku=sku).first()
            if product is None:
                raise Failed(index)
            return product

        def save_if_changed(product):
            if product.changed_fields():
                product.save()

        if op == "upsert_products":
            items = s.get("rows") or list(csv.DictReader(io.StringIO(s["csv"])))
            for row in items:
                row = {k: v for k, v in row.items() if v not in ("", None)}
                product = Product.objects.filter(sku=row["sku"]).first()
                if product is None:
                    extra = (
                        {"low_stock_threshold": int(row["low_stock_threshold"])}
                        if "low_stock_threshold" in row
                        else {}
                    )
                    Product(
                        sku=row["sku"],
                        name=row["name"],
                        price=Decimal(row["price"]),
                        stock=int(row.get("stock", 0)),
                        **extra,
                    ).save()
                    continue
                product.name, product.price = row["name"], Decimal(row["price"])
                if "stock" in row:
                    product.stock = int(row["stock"])
                if "low_stock_threshold" in row:
                    product.low_stock_threshold = int(row["low_stock_threshold"])
                save_if_changed(product)
        elif op == "set_prices":
            for sku, price in s["prices"].items():
                product = get(sku)
                product.price = Decimal(price)
                save_if_changed(product)
        elif op == "adjust_prices":
            sel, percent, round_to = s["select"], Decimal(s["percent"]), Decimal(s["round_to"])
            if "skus" in sel:
                targets = [get(sku) for sku in dict.fromkeys(sel["skus"])]
            else:
                qs = Product.objects.order_by("pk")
                targets = list(
                    qs.filter(sku__startswith=sel["sku_prefix"]) if "sku_prefix" in sel else qs
                )
            for product in targets:
                scaled = product.price * (100 + percent) / 100
                product.price = (
                    (scaled / round_to).to_integral_value(ROUND_HALF_UP) * round_to
                ).quantize(Decimal("0.01"))
                save_if_changed(product)
        elif op == "adjust_stock":
            for sku, delta in s["deltas"].items():
                product = get(sku)
                if product.stock + delta < 0:
                    raise Failed(index)
                product.stock += delta
                save_if_changed(product)
        elif op == "set_stock":
            for sku, stock in s["stock"].items():
                product = get(sku)
                product.stock = stock
                save_if_changed(product)
        elif op == "delete_products":
            for sku in s["skus"]:
                get(sku).delete()


class Recorder:
    """A user-style receiver on all four signals, logging what it sees per product."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

    @staticmethod
    def values(instance):
        return (instance.name, str(instance.price), instance.stock, instance.low_stock_threshold)

    def pre_save(self, sender, instance, update_fields=None, **kwargs):
        fields = tuple(sorted(update_fields)) if update_fields is not None else None
        self.calls.append(
            (instance.sku, "pre_save", instance._state.adding, fields, self.values(instance))
        )

    def post_save(self, sender, instance, created, update_fields=None, **kwargs):
        fields = tuple(sorted(update_fields)) if update_fields is not None else None
        reread = Product.objects.get(id=instance.id)
        self.calls.append(
            (instance.sku, "post_save", created, fields, self.values(instance), self.values(reread))
        )

    def pre_delete(self, sender, instance, **kwargs):
        self.calls.append((instance.sku, "pre_delete", self.values(instance)))

    def post_delete(self, sender, instance, **kwargs):
        self.calls.append((instance.sku, "post_delete", self.values(instance)))

    def per_product(self):
        out: dict[str, list] = {}
        for call in self.calls:
            out.setdefault(call[0], []).append(call[1:])
        return out


@pytest.fixture(params=["user receivers", "project receivers only"])
def recorder(request):
    """A connected ``Recorder`` (per-object dispatch), or ``None``: then only the project's
    receivers listen and bulk writes take the set-based fast path (``adapters``)."""
    if request.param == "project receivers only":
        assert adapters.saves_are_bulk()
        yield None
        return
    rec = Recorder()
    pairs = [
        (pre_save, rec.pre_save),
        (post_save, rec.post_save),
        (pre_delete, rec.pre_delete),
        (post_delete, rec.post_delete),
    ]
    for signal, receiver in pairs:
        signal.connect(receiver, sender=Product, dispatch_uid=f"identity.{receiver.__name__}")
    assert not adapters.saves_are_bulk()
    yield rec
    for signal, receiver in pairs:
        signal.disconnect(sender=Product, dispatch_uid=f"identity.{receiver.__name__}")


def observe() -> dict:
    def per_sku(qs, *fields):
        out: dict[str, list] = {}
        for row in qs.order_by("id").values_list("sku", *fields):
            out.setdefault(row[0], []).append(row[1:])
        return out

    audits = []
    for audit in DeletionAudit.objects.order_by("id"):
        snap = {
            k: v for k, v in audit.snapshot.items() if k not in ("id", "created_at", "updated_at")
        }
        audits.append(
            (audit.object_repr, audit.model_label, snap, audit.changed_by_id, audit.source)
        )
    return {
        "products": list(
            Product.objects.order_by("sku").values_list(
                "sku", "name", "price", "stock", "low_stock_threshold"
            )
        ),
        "history": per_sku(
            PriceHistory.objects,
            "name",
            "old_price",
            "new_price",
            "changed_by",
            "source",
            "product__sku",
        ),
        "ledger": per_sku(
            StockMovement.objects,
            "delta",
            "stock_after",
            "reason",
            "idempotency_key",
            "changed_by",
            "source",
            "product__sku",
        ),
        "alerts": per_sku(
            StockAlert.objects.annotate(is_open=Q(resolved_at__isnull=True)),
            "name",
            "stock",
            "threshold",
            "is_open",
            "product__sku",
            "delivery_status",
        ),
        "audits": sorted(audits, key=repr),
        # a deleted product's levels go with it (CASCADE); the others sum to its stock
        "levels": sorted(
            StockLevel.objects.values_list("product__sku", "location__code", "quantity"),
            key=repr,
        ),
    }


class Rollback(Exception):
    pass


def seed(products):
    with change_context(source="setup"):
        for sku, (price, stock, threshold) in products.items():
            Product.objects.create(
                sku=sku,
                name=f"Seed {sku}",
                price=Decimal(price),
                stock=stock,
                low_stock_threshold=threshold,
            )


@settings(
    max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(products=initial, steps=st.lists(step, min_size=1, max_size=5))
def test_pipeline_equals_per_object_save(recorder, operator, products, steps):
    spec = {"name": "property", "steps": steps}
    outcome = {}
    try:
        with transaction.atomic():
            seed(products)
            calls = recorder.calls if recorder else []
            calls.clear()
            with CaptureQueriesContext(connection) as queries:
                outcome["pipeline"] = process_pipeline(spec, user=operator)
            # each step on the SQL route empties the stage once before staging
            emptied = (f"TRUNCATE {STAGE}", f"DELETE FROM {STAGE}")
            outcome["staged"] = sum(q["sql"] in emptied for q in queries.captured_queries)
            outcome["pipeline_seen"] = observe()
            outcome["pipeline_calls"] = recorder.per_product() if recorder else None
            raise Rollback
    except Rollback:
        pass
    result = outcome["pipeline"]
    assert result["status"] in ("succeeded", "failed"), result
    if result["status"] == "succeeded":  # every step ran: which route did each take?
        staged = sum(s["op"] != "upsert_products" for s in steps) if recorder is None else 0
        assert outcome["staged"] == staged
    assert result["error"] is None or result["error"]["kind"] == "failed", result
    try:
        with transaction.atomic():
            seed(products)
            before = observe()
            calls.clear()
            failed_at = None
            try:
                with (
                    transaction.atomic(),
                    change_context(user=operator, source=f"pipeline:{result['run_id']}"),
                ):
                    reference(spec)
            except Failed as exc:
                failed_at = exc.step
            outcome["reference_seen"] = observe()
            outcome["reference_calls"] = recorder.per_product() if recorder else None
            raise Rollback
    except Rollback:
        pass

    if result["status"] == "failed":
        assert failed_at == result["error"]["errors"][0]["loc"][1], (result["error"], failed_at)
        assert outcome["pipeline_seen"] == before == outcome["reference_seen"]
        return
    assert failed_at is None
    assert outcome["pipeline_seen"] == outcome["reference_seen"]
    assert outcome["pipeline_calls"] == outcome["reference_calls"]
