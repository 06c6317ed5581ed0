"""The set-based route of the map steps, ``adjust_prices`` and ``delete_products``
(``app.pipelines.staged``): when it is taken, and that it has the object route's effects
beyond one chunk of products."""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_init, post_save, pre_delete, pre_save
from django.test.utils import CaptureQueriesContext

from app.models import (
    PriceHistory,
    Product,
    WebhookDelivery,
    WebhookEvent,
    WebhookSubscription,
)
from app.pipelines.folded import FOLD
from app.pipelines.staged import STAGE
from app.utils.utils import process_pipeline
from app.webhooks import outbox
from tests.pipelines.test_identity import Rollback, observe

pytestmark = pytest.mark.django_db

N = 2_500  # more than one chunk (tracking.CHUNK) of products


def user_pre_save(sender, instance, **kwargs):
    pass


class UserPreSave:
    """A user's ``pre_save`` receiver for ``Product``: the pipeline then writes per object."""

    def connect(self) -> None:
        pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.objects")

    def disconnect(self) -> None:
        pre_save.disconnect(sender=Product, dispatch_uid="test.objects")


@contextmanager
def on_route(route: str, *, subscribed: bool = True, receiver=None) -> Iterator[None]:
    """The body on ``route``: ``"staged"`` (only the project's receivers) or ``"objects"``
    (``receiver``, by default ``UserPreSave``, connected), with a webhook subscriber to every
    event when ``subscribed``, in a transaction rolled back afterwards."""
    receiver = receiver or UserPreSave()
    outbox.forget_subscriptions()
    try:
        with transaction.atomic():
            if subscribed:
                WebhookSubscription.objects.create(
                    url="https://hooks.example.com/x", events=WebhookEvent.values, secret="s"
                )
            if route == "objects":
                receiver.connect()
            try:
                yield
            finally:
                receiver.disconnect()
            raise Rollback
    except Rollback:
        pass
    finally:
        outbox.forget_subscriptions()


def user_post_init(sender, instance, **kwargs):
    pass


def staged_queries(spec: dict) -> int:
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(spec)
    assert result["status"] in ("succeeded", "previewed"), result
    # (consecutive map steps over the same SKUs are staged together, ``folded.FOLD``)
    return sum(STAGE in q["sql"] or FOLD in q["sql"] for q in queries.captured_queries)


@pytest.fixture
def products(db):
    Product.objects.bulk_create(
        Product(sku=f"S-{i:05d}", name=f"P{i}", price=Decimal("10.00"), stock=4 + i % 12)
        for i in range(N)
    )


def map_steps():
    return [
        {"op": "set_prices", "prices": {f"S-{i:05d}": f"{10 + i % 7}.50" for i in range(N)}},
        {"op": "adjust_stock", "deltas": {f"S-{i:05d}": (i % 9) - 4 for i in range(N)}},
        {"op": "set_stock", "stock": {f"S-{i:05d}": i % 8 for i in range(0, N, 3)}},
    ]


def test_only_project_receivers_take_the_staged_route(products):
    assert staged_queries({"name": "x", "steps": map_steps()}) > 0


@pytest.mark.parametrize("blocker", ["user pre_save", "user post_init", "dry run"])
def test_anything_needing_instances_takes_the_object_route(products, blocker):
    spec = {"name": "x", "steps": map_steps()}
    if blocker == "user pre_save":
        pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.user_pre_save")
    elif blocker == "user post_init":
        post_init.connect(user_post_init, sender=Product, dispatch_uid="test.user_post_init")
    else:
        spec["dry_run"] = True
    try:
        assert staged_queries(spec) == 0
    finally:
        pre_save.disconnect(sender=Product, dispatch_uid="test.user_pre_save")
        post_init.disconnect(sender=Product, dispatch_uid="test.user_post_init")


def outbox_rows() -> dict:
    """Per stream, in order: the outbox's contract (streams are independent of each other)."""
    rows: dict[str, list] = {}
    for event_type, stream, status, data in WebhookDelivery.objects.order_by("id").values_list(
        "event_type", "stream", "status", "data"
    ):
        for name in ("id", "opened_at", "resolved_at", "started_at", "finished_at"):
            data.get("alert", {}).pop(name, None)  # an alert's or a run's: differ between runs
            data.get("run", {}).pop(name, None)
        rows.setdefault(stream, []).append((event_type, status, json.dumps(data, sort_keys=True)))
    return dict(sorted(rows.items()))


@pytest.mark.parametrize("subscribed", [False, True], ids=["no webhooks", "subscribed"])
def test_both_routes_have_the_same_effects_over_many_chunks(products, subscribed):
    """History, ledger, alerts, products and webhook outbox rows after the same map steps,
    staged vs per object."""
    spec = {"name": "x", "steps": map_steps()}
    seen = {}
    for route in ("staged", "objects"):
        with on_route(route, subscribed=subscribed):
            assert (staged_queries(spec) > 0) == (route == "staged")
            # Run ids differ (PostgreSQL does not roll sequences back): not the effects.
            state = (observe(), outbox_rows())
            seen[route] = re.sub(r"pipeline:\d+", "pipeline:N", repr(state))
    assert ("'price.changed'" in seen["staged"]) == subscribed
    assert seen["staged"].count("'pipeline:N'") > N  # history and ledger rows were written
    assert "'pending'" in seen["staged"]  # and alerts opened
    assert seen["staged"] == seen["objects"]


def test_failure_names_the_item_and_leaves_everything_unchanged(products):
    before = observe()
    deltas = {f"S-{i:05d}": 1 for i in range(N)}
    deltas["S-02400"] = -1000
    deltas["NOPE"] = 1
    result = process_pipeline(
        {"name": "x", "steps": [map_steps()[0], {"op": "adjust_stock", "deltas": deltas}]}
    )
    assert result["status"] == "failed"
    # Unknown SKUs are reported first; the stock check runs once every SKU is known.
    assert result["error"]["errors"] == [
        {"loc": ["steps", 1, "deltas", "NOPE"], "msg": "step 1 (adjust_stock): unknown SKU 'NOPE'"}
    ]
    del deltas["NOPE"]
    result = process_pipeline({"name": "x", "steps": [{"op": "adjust_stock", "deltas": deltas}]})
    assert result["error"]["errors"] == [
        {
            "loc": ["steps", 0, "deltas", "S-02400"],
            "msg": "step 0 (adjust_stock): stock of S-02400 would go negative: 4 -1000 = -996",
        }
    ]
    assert observe() == before


def stages_left() -> int:
    """Staging tables in the database, of every session: pg_class lists the temporary
    tables of all server connections, whichever one this query runs on (behind PgBouncer,
    any of its pool)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_class WHERE relname IN (%s, %s) AND relpersistence = 't'",
            [STAGE, FOLD],
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_staging_table_outlives_its_transaction():
    """Behind a transaction pooler the next transaction of any client may get the server
    connection a run used: the stage must end with the run (committed or rolled back)."""
    Product.objects.bulk_create(
        Product(sku=f"T-{i}", name=f"P{i}", price=Decimal("10.00"), stock=10) for i in range(5)
    )
    steps = [
        {"op": "set_prices", "prices": {f"T-{i}": "12.00" for i in range(5)}},
        {"op": "adjust_stock", "deltas": {f"T-{i}": -1 for i in range(5)}},
    ]
    for price in ("12.00", "13.00"):  # twice: the second run stages afresh
        steps[0]["prices"] = {f"T-{i}": price for i in range(5)}
        assert staged_queries({"name": "x", "steps": steps}) > 0
        assert stages_left() == 0
    failed = process_pipeline(
        {"name": "x", "steps": [{"op": "adjust_stock", "deltas": {"T-0": -1, "NOPE": 1}}]}
    )
    assert failed["status"] == "failed"
    assert stages_left() == 0
    unknown = {"T-0": 1, "NOPE": 1}
    failed = process_pipeline(  # folded steps: one stage of their own
        {
            "name": "x",
            "steps": [
                {"op": "adjust_stock", "deltas": unknown},
                {"op": "adjust_stock", "deltas": unknown},
            ],
        }
    )
    assert failed["status"] == "failed"
    assert stages_left() == 0
    assert set(Product.objects.values_list("price", "stock")) == {(Decimal("13.00"), 8)}


# --- adjust_prices and delete_products ------------------------------------------------


def user_pre_delete(sender, instance, **kwargs):
    pass


def sku(i: int) -> str:
    return f"S-{i:05d}"


def selecting_steps():
    """Every selection of ``adjust_prices`` over more than one chunk, in orders other than
    the primary key's, then a delete of most products (listed backwards, one twice)."""
    listed = [sku(i) for i in range(N - 1, 0, -2)] + [sku(7)]
    return [
        {"op": "adjust_prices", "select": {"all": True}, "percent": "12.5", "round_to": "0.05"},
        {"op": "adjust_prices", "select": {"sku_prefix": "S-01"}, "percent": "-33.3"},
        {"op": "adjust_prices", "select": {"skus": listed}, "percent": "7", "round_to": "1"},
        {"op": "delete_products", "skus": [sku(i) for i in range(N - 1, 150, -1)] + [sku(999)]},
    ]


@pytest.fixture
def held(products, operator):
    """Stock at a second location, active reservations, low-stock alerts (from the
    fixture's stock) and history: what a deletion must cascade to, null or resolve."""
    from app.models import Location
    from app.services import reservations

    Location.objects.create(code="B", name="B")
    moved = {sku(i): 1 for i in range(0, N, 5)}
    result = process_pipeline(
        {
            "name": "setup",
            "steps": [
                {"op": "transfer_stock", "from_location": "MAIN", "to_location": "B",
                 "quantities": moved},
                {"op": "set_prices", "prices": {sku(i): "20.00" for i in range(0, N, 3)}},
            ],
        }
    )  # fmt: skip
    assert result["status"] == "succeeded", result
    for i in range(0, N, 97):
        reservations.reserve(sku(i), 1, user=operator, reference=f"order {i}")


def deleted_state() -> tuple:
    """What a deletion leaves: audit rows (in order, whole snapshots but for the time of the
    run's own last write), levels, reservations."""
    from app.models import DeletionAudit, Reservation, StockAlert, StockLevel, StockMovement

    audits = list(
        DeletionAudit.objects.order_by("id").values_list(
            "model_label", "object_pk", "object_repr", "snapshot", "changed_by", "source"
        )
    )
    for *_, snapshot, _, _ in audits:  # the time of the run's own writes differs, not its form
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3})?Z", snapshot["updated_at"])
        snapshot["updated_at"] = "<the run's>"
    levels = list(
        StockLevel.objects.order_by("product_id", "location_id").values_list(
            "product__sku", "location__code", "quantity"
        )
    )
    held = list(
        Reservation.objects.order_by("id").values_list("sku", "product__sku", "status", "quantity")
    )
    # the kept rows' keys, as stored (a key left pointing at a deleted product joins as null)
    keys = [
        list(model.objects.order_by("id").values_list("product_id", flat=True))
        for model in (PriceHistory, StockMovement, StockAlert, Reservation)
    ]
    return audits, levels, held, keys


class Recorder:
    """A user's receiver on the four signals: how often each product was seen by each."""

    def __init__(self) -> None:
        self.calls: dict[tuple[str, str], int] = {}

    def __call__(self, sender, instance, signal, **kwargs):
        name = {pre_save: "pre_save", post_save: "post_save"}.get(signal) or (
            "pre_delete" if signal is pre_delete else "post_delete"
        )
        key = (name, instance.sku)
        self.calls[key] = self.calls.get(key, 0) + 1

    def connect(self) -> None:
        for signal in (pre_save, post_save, pre_delete, post_delete):
            signal.connect(self, sender=Product, dispatch_uid=f"test.recorder.{id(signal)}")

    def disconnect(self) -> None:
        for signal in (pre_save, post_save, pre_delete, post_delete):
            signal.disconnect(sender=Product, dispatch_uid=f"test.recorder.{id(signal)}")


@pytest.mark.parametrize("subscribed", [False, True], ids=["no webhooks", "subscribed"])
def test_selecting_steps_have_the_same_effects_on_both_routes(held, subscribed):
    """Prices, history (old and new prices as the object route rounds them), alerts,
    ledger, levels, reservations, deletion audit rows and webhook outbox rows after
    ``adjust_prices`` and ``delete_products`` over several chunks: SQL route vs a user's
    receiver (the object route, which sends every signal exactly once per product)."""
    spec = {"name": "x", "steps": selecting_steps()}
    seen, results = {}, {}
    for route in ("staged", "objects"):
        recorder = Recorder()
        with on_route(route, subscribed=subscribed, receiver=recorder):
            with CaptureQueriesContext(connection) as queries:
                results[route] = process_pipeline(spec)
            assert results[route]["status"] == "succeeded", results[route]
            staged = sum(STAGE in q["sql"] for q in queries.captured_queries)
            if route == "staged":
                assert staged > 0
                # set-based: a few statements per chunk, none per product
                assert len(queries.captured_queries) < 150 + 30 * subscribed
            else:
                assert staged == 0
                run = f"pipeline:{results[route]['run_id']}"
                changed = Counter(
                    PriceHistory.objects.filter(source=run).values_list("sku", flat=True)
                )
                gone = set(spec["steps"][3]["skus"])
                expected = Counter({("pre_delete", s): 1 for s in gone})
                expected.update({("post_delete", s): 1 for s in gone})
                for name in ("pre_save", "post_save"):
                    expected.update({(name, s): n for s, n in changed.items()})
                assert recorder.calls == expected
            state = (observe(), outbox_rows(), deleted_state())
            seen[route] = re.sub(r"pipeline:\d+", "pipeline:N", repr(state))
    for result in results.values():
        result.pop("run_id"), result.pop("duration_ms")
    assert results["staged"] == results["objects"]
    totals = results["staged"]["totals"]
    assert totals["deleted"] == N - 151 and totals["price_changes"] > N
    assert totals["alerts_resolved"] > 0  # the deleted products' open alerts
    assert ("'product.deleted'" in seen["staged"]) == subscribed
    # a deleted product's reservation stays, without its product; its levels go
    assert "('S-02425', None, 'active', 1)" in seen["staged"]
    assert "('S-00150', 'B', 1)" in seen["staged"] and "('S-00155', 'B', 1)" not in seen["staged"]
    assert seen["staged"] == seen["objects"]


SELECTING = {
    "adjust_prices all": [selecting_steps()[0]],
    "adjust_prices prefix": [selecting_steps()[1]],
    "adjust_prices skus": [selecting_steps()[2]],
    "delete_products": [selecting_steps()[3]],
}


@pytest.mark.parametrize("steps", SELECTING.values(), ids=SELECTING.keys())
def test_selecting_steps_take_the_staged_route_while_rows_suffice(products, steps):
    """The route is decided per kind of write: a user's ``pre_delete`` receiver keeps
    ``adjust_prices`` on the SQL route, a ``pre_save`` one keeps ``delete_products`` there."""
    deleting = steps[0]["op"] == "delete_products"
    other, uid = (pre_save, user_pre_save) if deleting else (pre_delete, user_pre_delete)
    other.connect(uid, sender=Product, dispatch_uid="test.other")
    try:
        assert staged_queries({"name": "x", "steps": steps}) > 0
    finally:
        other.disconnect(sender=Product, dispatch_uid="test.other")


def level_deleted(sender, instance, **kwargs):
    pass


@pytest.mark.parametrize("steps", SELECTING.values(), ids=SELECTING.keys())
@pytest.mark.parametrize(
    "blocker", ["user receiver", "user post_init", "levels watched", "dry run"]
)
def test_selecting_steps_take_the_object_route_when_instances_are_needed(products, steps, blocker):
    """A user's receiver of the step's signals (``pre_save`` for prices, ``post_delete``
    for deletes), instance creation watched, a receiver on the rows a delete cascades to
    (Django then deletes those one by one, sending their signals), a dry run."""
    from app.models import StockLevel

    deleting = steps[0]["op"] == "delete_products"
    spec = {"name": "x", "steps": steps}
    connected = []
    if blocker == "user receiver":
        signal, uid = (post_delete, user_pre_delete) if deleting else (pre_save, user_pre_save)
        connected.append((signal, Product, uid))
    elif blocker == "user post_init":
        connected.append((post_init, Product, user_post_init))
    elif blocker == "levels watched":
        connected.append((pre_delete, StockLevel, level_deleted))
    else:
        spec["dry_run"] = True
    for signal, sender, receiver in connected:
        signal.connect(receiver, sender=sender, dispatch_uid="test.blocker")
    try:
        expected_route = blocker == "levels watched" and not deleting  # prices never cascade
        assert (staged_queries(spec) > 0) == expected_route
    finally:
        for signal, sender, _ in connected:
            signal.disconnect(sender=sender, dispatch_uid="test.blocker")


@pytest.mark.parametrize("route", ["staged", "objects"])
def test_selecting_steps_fail_at_the_same_chunk_with_the_same_errors(products, route):
    """An unknown SKU is reported with the SKUs of its chunk only (the object route stops
    there), a price too large with the chunk's too-large prices; nothing changes."""
    before = observe()
    listed = [sku(i) for i in range(N)]
    listed[1500], listed[1900], listed[2400] = "NOPE-1", "NOPE-2", "NOPE-3"
    listed.insert(10, listed[1200])  # a duplicate: chunks count each SKU once
    huge = {"op": "set_prices", "prices": {sku(2222): "9000000000.00", sku(2300): "9999999999.00"}}
    cases = [
        (
            [{"op": "adjust_prices", "select": {"skus": listed}, "percent": "1"}],
            [(["steps", 0, "select", "skus", 1501], "unknown SKU 'NOPE-1'"),
             (["steps", 0, "select", "skus", 1901], "unknown SKU 'NOPE-2'")],
        ),
        (
            [{"op": "delete_products", "skus": listed}],
            [(["steps", 0, "skus", 1501], "unknown SKU 'NOPE-1'"),
             (["steps", 0, "skus", 1901], "unknown SKU 'NOPE-2'")],
        ),
        (
            [huge, {"op": "adjust_prices", "select": {"sku_prefix": "S-"}, "percent": "12"}],
            [(["steps", 1, "select"], "new price of S-02222 (10080000000.00) is too large"),
             (["steps", 1, "select"], "new price of S-02300 (11199999998.88) is too large")],
        ),
    ]  # fmt: skip
    for steps, errors in cases:
        if route == "objects":
            pre_save.connect(user_pre_save, sender=Product, dispatch_uid="test.objects")
            pre_delete.connect(user_pre_delete, sender=Product, dispatch_uid="test.objects")
        try:
            assert (staged_queries_failing({"name": "x", "steps": steps}) > 0) == (
                route == "staged"
            )
        finally:
            pre_save.disconnect(sender=Product, dispatch_uid="test.objects")
            pre_delete.disconnect(sender=Product, dispatch_uid="test.objects")
        result = _last_result
        assert result["status"] == "failed"
        step = errors[0][0][1]
        op = steps[step]["op"]
        assert [(e["loc"], e["msg"]) for e in result["error"]["errors"]] == [
            (loc, f"step {step} ({op}): {msg}") for loc, msg in errors
        ]
        assert observe() == before


_last_result: dict = {}


def staged_queries_failing(spec: dict) -> int:
    """``staged_queries`` for a run expected to fail; its result in ``_last_result``."""
    global _last_result
    with CaptureQueriesContext(connection) as queries:
        _last_result = process_pipeline(spec)
    return sum(STAGE in q["sql"] for q in queries.captured_queries)


def test_a_deletion_audits_only_the_rows_it_deleted(products):
    """A product whose row is gone by the time it is deleted leaves no audit row and no
    ``product.deleted`` event, on the set-based route (``deletes.delete_rows``) as on the
    per-object route (the queryset ``delete()`` the object route uses); the audit row of a
    deleted one is the same on both, snapshot included."""
    from app.models import DeletionAudit
    from app.models.deletes import delete_rows

    outbox.forget_subscriptions()
    WebhookSubscription.objects.create(
        url="https://hooks.example.com/x", events=[WebhookEvent.PRODUCT_DELETED], secret="s"
    )
    seen = {}
    for route in ("set-based", "per-object"):
        try:
            with transaction.atomic():
                kept, gone = list(Product.objects.order_by("pk")[:2])
                with transaction.atomic():
                    DeletionAudit.objects.all().delete()
                    Product.objects.filter(pk=gone.pk)._raw_delete("default")  # no signals
                if route == "set-based":
                    assert delete_rows([gone, kept], using="default") == 1
                else:
                    assert (
                        Product.objects.filter(pk__in=[kept.pk, gone.pk]).delete()[1]["app.Product"]
                        == 1
                    )
                audits = list(
                    DeletionAudit.objects.values_list("object_pk", "object_repr", "snapshot")
                )
                events = list(WebhookDelivery.objects.values_list("event_type", "stream"))
                seen[route] = audits, events
                raise Rollback
        except Rollback:
            pass
    outbox.forget_subscriptions()
    (audits, events) = seen["set-based"]
    assert [pk for pk, _, _ in audits] == [str(kept.pk)]
    assert events == [("product.deleted", f"product:{kept.pk}")]
    assert seen["set-based"] == seen["per-object"]


@pytest.mark.parametrize("folded", [True, False], ids=["folded", "alone"])
def test_a_stock_step_inserts_default_levels_only_when_some_are_missing(folded):
    """The levels effect skips its second pass over the change rows (the INSERT of missing
    default levels) when its UPDATE found a level for every product the SQL route names,
    and still creates the missing ones (a product created without stock has none)."""
    from app.models import StockLevel

    for i in range(3):
        Product.objects.create(sku=f"LV-{i}", name=f"L {i}", price=Decimal("1.00"), stock=5)
    Product.objects.create(sku="LV-E", name="empty", price=Decimal("1.00"), stock=0)
    assert not StockLevel.objects.filter(product__sku="LV-E").exists()

    def inserts(skus: list[str]) -> int:
        steps = [{"op": "adjust_stock", "deltas": dict.fromkeys(skus, 2)}]
        if folded:
            steps.insert(0, {"op": "set_prices", "prices": dict.fromkeys(skus, "2.00")})
        with CaptureQueriesContext(connection) as queries:
            result = process_pipeline({"steps": steps})
        assert result["status"] == "succeeded", result
        assert sum(STAGE in q["sql"] or FOLD in q["sql"] for q in queries.captured_queries)
        return sum('INSERT INTO "app_stocklevel"' in q["sql"] for q in queries.captured_queries)

    assert inserts(["LV-0", "LV-1", "LV-2"]) == 0
    assert inserts(["LV-0", "LV-E", "LV-2"]) == 1
    levels = dict(StockLevel.objects.values_list("product__sku", "quantity"))
    assert levels == {"LV-0": 9, "LV-1": 7, "LV-2": 9, "LV-E": 2}
    assert levels == dict(Product.objects.values_list("sku", "stock"))
