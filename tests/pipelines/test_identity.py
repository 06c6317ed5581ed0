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
and every step takes the SQL route, ``app.pipelines.staged`` and ``app.pipelines.upserts``:
the test checks which route ran).

With locations (``test_located_pipeline_equals_per_object_operations``): a catalogue spread
over several locations (one deactivated), with per-location thresholds and reservations;
``set_stock``/``adjust_stock`` naming a location are compared with ``save()`` inside
``change_context(location_id=...)`` per product, ``transfer_stock`` steps with the
``transfer_stock`` service per product; stock levels per (product, location) and the
location of every ledger row and alert are compared too.
"""

from __future__ import annotations

import contextlib
import csv
import io
from decimal import ROUND_HALF_UP, Decimal

import pytest
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save
from django.test.utils import CaptureQueriesContext
from hypothesis import HealthCheck, currently_in_test_context, event, given, settings
from hypothesis import strategies as st

from app.models import (
    DeletionAudit,
    Location,
    PriceHistory,
    Product,
    StockAlert,
    StockLevel,
    StockMovement,
)
from app.pipelines.folded import FOLD, MAX_FOLDED
from app.pipelines.staged import STAGE
from app.pipelines.upserts import UPSERT_STAGE
from app.services import reservations
from app.services.context import change_context
from app.services.stock import StockAdjustmentRefused, set_location_threshold, transfer_stock
from app.tracking import adapters
from app.utils.utils import process_pipeline
from tests.conftest import hypothesis_examples

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
    """Apply the spec one object at a time with save()/delete(), failing like a pipeline would.

    Each save runs in a savepoint: a total below what the product's other locations hold,
    or a location's stock below zero, is refused by the levels' check (``IntegrityError``),
    which fails the step as the pipeline does before writing."""
    for index, s in enumerate(spec["steps"]):
        op = s["op"]

        def get(sku, index=index):
            product = Product.objects.filter(sku=sku).first()
            if product is None:
                raise Failed(index)
            return product

        def save_if_changed(product, location_id=None, index=index):
            if not product.changed_fields():
                return
            try:
                with transaction.atomic(), change_context(location_id=location_id):
                    product.save()
            except IntegrityError:
                raise Failed(index) from None

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
        elif op in ("adjust_stock", "set_stock"):
            values = s["deltas"] if op == "adjust_stock" else s["stock"]
            location = None
            if s.get("location") is not None:
                location = Location.objects.filter(code=s["location"]).first()
                if location is None:
                    raise Failed(index)
            for sku, value in values.items():
                product = get(sku)
                if location is None:
                    delta = value if op == "adjust_stock" else value - product.stock
                else:  # set_stock sets the location's quantity: the total moves by the difference
                    level = StockLevel.objects.filter(product=product, location=location)
                    held = level.values_list("quantity", flat=True).first() or 0
                    delta = value if op == "adjust_stock" else value - held
                    if delta > 0 and not location.active:
                        raise Failed(index)  # stock may leave a deactivated location, not arrive
                if product.stock + delta < 0:
                    raise Failed(index)
                product.stock += delta
                save_if_changed(product, location.pk if location else None)
        elif op == "transfer_stock":
            for sku, quantity in s["quantities"].items():
                try:
                    transfer_stock(sku, s["from_location"], s["to_location"], quantity, user=None)
                except (StockAdjustmentRefused, Product.DoesNotExist):
                    raise Failed(index) from None
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
    def per_sku(qs, *fields, by=("sku",)):
        out: dict[tuple, list] = {}
        for row in qs.order_by("id").values_list(*by, *fields):
            out.setdefault(row[: len(by)], []).append(row[len(by) :])
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
        "levels": sorted(
            StockLevel.objects.values_list(
                "product__sku", "location__code", "quantity", "low_stock_threshold"
            )
        ),
        "ledger": per_sku(
            StockMovement.objects,
            "location__code",
            "delta",
            "stock_after",
            "reason",
            "idempotency_key",
            "changed_by",
            "source",
            "product__sku",
        ),
        # Per (product, location): the order of one product's episodes at different
        # locations within one change is not part of the contract.
        "alerts": per_sku(
            StockAlert.objects.annotate(is_open=Q(resolved_at__isnull=True)),
            "name",
            "stock",
            "threshold",
            "is_open",
            "product__sku",
            "delivery_status",
            by=("sku", "location__code"),
        ),
        "audits": sorted(audits, key=repr),
    }


class Rollback(Exception):
    pass


def note(value: str) -> None:
    """A Hypothesis event, when ``assert_same_effects`` runs inside a property test."""
    if currently_in_test_context():
        event(value)


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


def assert_same_effects(recorder, operator, spec: dict, setup, staged: int | None = None) -> None:
    """Make the state (``setup()``) once; run ``spec`` through ``process_pipeline``, then
    through ``reference``, each in a savepoint rolled back afterwards; compare. ``staged``:
    how many steps must take the SQL route when no user receiver is connected."""
    outcome = {}
    calls = recorder.calls if recorder else []
    try:
        with transaction.atomic():
            setup()
            before = observe()
            try:
                with transaction.atomic():
                    calls.clear()
                    with CaptureQueriesContext(connection) as queries:
                        outcome["pipeline"] = result = process_pipeline(spec, user=operator)
                    # each step on the SQL route empties the stage once before staging (an
                    # upsert once per chunk)
                    # (folded map steps once per group, dropping the group's stage)
                    emptied = (
                        *(
                            f"{verb} {table}"
                            for verb in ("TRUNCATE", "DELETE FROM")
                            for table in (STAGE, UPSERT_STAGE)
                        ),
                        f"DROP TABLE IF EXISTS {FOLD}",
                    )
                    outcome["staged"] = sum(q["sql"] in emptied for q in queries.captured_queries)
                    outcome["pipeline_seen"] = observe()
                    outcome["pipeline_calls"] = recorder.per_product() if recorder else None
                    raise Rollback
            except Rollback:
                pass
            assert observe() == before
            assert result["status"] in ("succeeded", "failed"), result
            assert result["error"] is None or result["error"]["kind"] == "failed", result
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

    seen = outcome["pipeline_seen"]
    note(f"pipeline {result['status']}")
    if result["status"] == "succeeded":
        kinds = {s["op"] + (" at a location" if s.get("location") else "") for s in spec["steps"]}
        for kind in kinds:
            note(f"succeeded with {kind}")
        if any(key[1] for key in seen["alerts"]):
            note("succeeded with per-location alerts")
    else:
        note(f"failed at {spec['steps'][result['error']['errors'][0]['loc'][1]]['op']}")
    if result["status"] == "failed":
        assert failed_at == result["error"]["errors"][0]["loc"][1], (result["error"], failed_at)
        assert outcome["pipeline_seen"] == before == outcome["reference_seen"]
        return
    assert failed_at is None, (failed_at, result)
    if staged is not None:  # every step ran: which route did each take?
        assert outcome["staged"] == (staged if recorder is None else 0)
    assert outcome["pipeline_seen"] == outcome["reference_seen"]
    assert outcome["pipeline_calls"] == outcome["reference_calls"]


@settings(
    max_examples=hypothesis_examples(120),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(products=initial, steps=st.lists(step, min_size=1, max_size=5))
def test_pipeline_equals_per_object_save(recorder, operator, products, steps):
    assert_same_effects(
        recorder,
        operator,
        {"name": "property", "steps": steps},
        lambda: seed(products),
        staged=stagings(steps),
    )


def map_keys(step: dict) -> list[str] | None:
    """The SKUs of a map step that may fold with its neighbours, in order (else None)."""
    key = {"set_prices": "prices", "set_stock": "stock", "adjust_stock": "deltas"}.get(step["op"])
    if key is None or step.get("location") is not None:
        return None
    return list(step[key])


def stagings(steps: list[dict]) -> int:
    """How many times the steps stage their input on the SQL route: consecutive map steps
    over the same SKUs in the same order are staged once together (``app.pipelines.folded``;
    no level here has its own threshold), the others as ``staged_chunks`` says."""
    count, i = 0, 0
    while i < len(steps):
        keys, end = map_keys(steps[i]), i + 1
        while keys is not None and end < len(steps) and end - i < MAX_FOLDED:
            if map_keys(steps[end]) != keys:
                break
            end += 1
        count += 1 if end - i > 1 else staged_chunks(steps[i])
        i = end
    return count


def staged_chunks(step: dict) -> int:
    """How many times a step on the SQL route stages its input: once, or for an upsert
    once per chunk of distinct SKUs (a repeated SKU starts a new chunk)."""
    if step["op"] != "upsert_products":
        return 1
    items = step["rows"] if "rows" in step else list(csv.DictReader(io.StringIO(step["csv"])))
    chunks, seen = 1, set()
    for item in items:
        if item["sku"] in seen:
            chunks, seen = chunks + 1, set()
        seen.add(item["sku"])
    return chunks


# Locations: MAIN (the default), two more, and SHUT, deactivated once stock was moved there
# (stock may leave it, never arrive); NOWHERE does not exist.
PLACES = ["NORTH", "SOUTH", "SHUT"]
codes = st.sampled_from(["MAIN"] * 3 + ["NORTH"] * 3 + ["SOUTH"] * 2 + ["SHUT", "NOWHERE"])
adjust_at = st.builds(
    lambda d, c: {"op": "adjust_stock", "deltas": d, "location": c},
    st.dictionaries(skus, st.integers(-3, 6), min_size=1, max_size=3),
    codes,
)
set_at = st.builds(
    lambda d, c: {"op": "set_stock", "stock": d, "location": c},
    st.dictionaries(skus, st.integers(0, 8), min_size=1, max_size=3),
    codes,
)
transfer = st.builds(
    lambda q, a, b: {"op": "transfer_stock", "from_location": a, "to_location": b, "quantities": q},
    st.dictionaries(skus, st.integers(1, 3), min_size=1, max_size=2),
    st.sampled_from(["MAIN"] * 6 + ["NORTH", "SOUTH", "SHUT", "NOWHERE"]),
    st.sampled_from(["NORTH"] * 5 + ["SOUTH"] * 3 + ["MAIN", "SHUT", "NOWHERE"]),
)
# Weighted: three in ten steps a transfer, two each a located adjust/set, three the others.
located_steps = st.integers(0, 9).flatmap(
    lambda i: (transfer, adjust_at, set_at, step)[(0, 0, 0, 1, 1, 2, 2, 3, 3, 3)[i]]
)
spread = st.tuples(*(st.integers(0, 3) for _ in PLACES))  # units moved from MAIN to each
catalogue = st.dictionaries(
    skus,
    st.tuples(
        prices,
        st.integers(4, 14),
        st.integers(0, 8),
        spread,
        st.dictionaries(st.sampled_from(["MAIN", *PLACES]), st.integers(0, 5), max_size=2),
    ),
    min_size=len(SKUS) - 1,
    max_size=len(SKUS),
)
holds = st.lists(
    st.tuples(skus, st.sampled_from([None, "MAIN", "NORTH", "SOUTH"]), st.integers(1, 3)),
    max_size=3,
)


def seed_located(products, held) -> None:
    """``seed`` plus locations: stock moved from MAIN to the others, per-location
    thresholds, reservations (those that fit), then SHUT deactivated."""
    seed({sku: row[:3] for sku, row in products.items()})
    with change_context(source="setup"):
        for code in PLACES:
            Location.objects.create(code=code, name=f"Store {code}")
        for sku, (_, stock, _, moves, thresholds) in products.items():
            left = stock
            for code, n in zip(PLACES, moves, strict=True):
                if 0 < n <= left:
                    transfer_stock(sku, "MAIN", code, n, user=None)
                    left -= n
            for code, threshold in thresholds.items():
                set_location_threshold(sku, code, threshold)
        for sku, code, n in held:
            if sku in products:
                with contextlib.suppress(StockAdjustmentRefused):
                    reservations.reserve(sku, n, user=None, location=code, reference="seed")
        Location.objects.filter(code="SHUT").update(active=False)


@settings(
    max_examples=hypothesis_examples(100),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    products=catalogue,
    held=holds,
    steps=st.lists(located_steps, min_size=1, max_size=3),
)
def test_located_pipeline_equals_per_object_operations(recorder, operator, products, held, steps):
    assert_same_effects(
        recorder,
        operator,
        {"name": "located property", "steps": steps},
        lambda: seed_located(products, held),
    )


@st.composite
def folding(draw):
    """Consecutive map steps over the same SKUs in the same order (folded into one product
    write on the SQL route, ``app.pipelines.folded``), between other steps."""
    keys = draw(st.lists(skus, min_size=1, max_size=3, unique=True))
    kinds = draw(
        st.lists(
            st.sampled_from(["set_prices", "adjust_stock", "set_stock"]), min_size=2, max_size=4
        )
    )
    steps = []
    for kind in kinds:
        if kind == "set_prices":
            steps.append({"op": kind, "prices": {k: draw(prices) for k in keys}})
        elif kind == "adjust_stock":
            steps.append({"op": kind, "deltas": {k: draw(st.integers(-8, 8)) for k in keys}})
        else:
            steps.append({"op": kind, "stock": {k: draw(stocks) for k in keys}})
    before = draw(st.lists(step, max_size=1))
    after = draw(st.lists(step, max_size=1))
    return before + steps + after


@settings(
    max_examples=hypothesis_examples(80),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(products=initial, steps=folding())
def test_folded_map_steps_equal_per_object_save(recorder, operator, products, steps):
    assert_same_effects(
        recorder,
        operator,
        {"name": "folded property", "steps": steps},
        lambda: seed(products),
        staged=stagings(steps),
    )
