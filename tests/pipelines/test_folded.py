"""Consecutive map steps over the same SKUs, folded into one product write on the SQL route
(``app.pipelines.folded``): the effects, results and failures of the steps run one after
another, per object."""

from __future__ import annotations

import re
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from app.models import Location, PriceHistory, Product, StockAlert, StockLevel
from app.pipelines.folded import FOLD
from app.pipelines.staged import STAGE
from app.services.context import change_context
from app.services.stock import set_location_threshold, transfer_stock
from app.utils.utils import process_pipeline
from tests.pipelines.test_identity import (  # noqa: F401 (the recorder fixture)
    Rollback,
    assert_same_effects,
    observe,
    recorder,
    seed,
)
from tests.pipelines.test_staged import on_route, outbox_rows

pytestmark = pytest.mark.django_db

SEEDED = {
    "A-1": ("10.00", 5, 4),
    "A-2": ("20.00", 3, 2),
    "B-1": ("7.50", 0, 1),
    "B-2": ("1.00", 9, 8),
}
KEYS = list(SEEDED)


def spec(*steps) -> dict:
    return {"name": "folded", "steps": list(steps)}


def prices(*values) -> dict:
    return {"op": "set_prices", "prices": dict(zip(KEYS, values, strict=True))}


def adjust(*values) -> dict:
    return {"op": "adjust_stock", "deltas": dict(zip(KEYS, values, strict=True))}


def stock(*values) -> dict:
    return {"op": "set_stock", "stock": dict(zip(KEYS, values, strict=True))}


CASES = {
    "price then stock": spec(prices("11.00", "20.00", "7.55", "1.00"), adjust(-2, 0, 3, -1)),
    "stock then price": spec(adjust(-2, 0, 3, -1), prices("11.00", "20.00", "7.55", "1.00")),
    "stock twice": spec(adjust(-2, 1, 3, -1), adjust(-2, -1, -1, 4)),
    "set then adjust": spec(stock(1, 3, 8, 9), adjust(4, -1, -8, -2)),
    "adjust then set back": spec(adjust(-3, 2, 1, 0), stock(5, 3, 0, 9)),
    "prices twice": spec(prices("1.00", "2.00", "7.50", "1.00"), prices("10.00", "2.00", "3", "4")),
    "four steps": spec(
        prices("11.00", "20.00", "7.55", "1.00"),
        adjust(-2, 0, 3, -1),
        prices("12.00", "20.00", "7.50", "1.10"),
        stock(9, 0, 3, 8),
    ),
    "second step fails": spec(prices("11.00", "20.00", "7.55", "1.00"), adjust(-2, 0, -1, -1)),
    "third step fails": spec(adjust(1, 1, 1, 1), stock(1, 3, 8, 9), adjust(0, 0, -9, 0)),
}


@pytest.mark.parametrize("steps", CASES.values(), ids=CASES.keys())
def test_folded_steps_equal_per_object_save(recorder, operator, steps):  # noqa: F811
    """Both routes, against ``save()`` per product: products, history, ledger, levels,
    alerts (opened by one step, resolved by the next), what user receivers see; on the SQL
    route the steps are staged once (with a user receiver, never)."""
    assert_same_effects(recorder, operator, steps, lambda: seed(SEEDED), staged=1)


def test_a_failing_step_is_named_and_nothing_changes(operator):
    seed(SEEDED)
    before = observe()
    result = process_pipeline(CASES["third step fails"], user=operator)
    assert result["status"] == "failed"
    assert result["error"]["errors"] == [
        {
            "loc": ["steps", 2, "deltas", "B-1"],
            "msg": "step 2 (adjust_stock): stock of B-1 would go negative: 8 -9 = -1",
        }
    ]
    unknown = {"op": "adjust_stock", "deltas": {"A-1": 1, "NOPE": 2}}
    result = process_pipeline(
        spec(unknown, {"op": "set_stock", "stock": {"A-1": 1, "NOPE": 2}}), user=operator
    )
    assert result["error"]["errors"] == [
        {"loc": ["steps", 0, "deltas", "NOPE"], "msg": "step 0 (adjust_stock): unknown SKU 'NOPE'"}
    ]
    assert observe() == before


def test_each_step_keeps_its_counts_and_price_changes(operator):
    seed(SEEDED)
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(CASES["four steps"], user=operator)
    assert result["status"] == "succeeded", result
    assert sum(FOLD in q["sql"] for q in queries.captured_queries) > 0
    assert not any(STAGE in q["sql"] for q in queries.captured_queries)
    counts = [
        {k: s[k] for k in ("index", "op", "updated", "unchanged", "created", "deleted")}
        for s in result["steps"]
    ]
    assert counts == [
        {"index": 0, "op": "set_prices", "updated": 2, "unchanged": 2, "created": 0, "deleted": 0},
        {
            "index": 1,
            "op": "adjust_stock",
            "updated": 3,
            "unchanged": 1,
            "created": 0,
            "deleted": 0,
        },
        {"index": 2, "op": "set_prices", "updated": 3, "unchanged": 1, "created": 0, "deleted": 0},
        {"index": 3, "op": "set_stock", "updated": 2, "unchanged": 2, "created": 0, "deleted": 0},
    ]
    assert result["price_changes"] == [
        {"step": 0, "sku": "A-1", "old": "10.00", "new": "11.00"},
        {"step": 0, "sku": "B-1", "old": "7.50", "new": "7.55"},
        {"step": 2, "sku": "A-1", "old": "11.00", "new": "12.00"},
        {"step": 2, "sku": "B-1", "old": "7.55", "new": "7.50"},
        {"step": 2, "sku": "B-2", "old": "1.00", "new": "1.10"},
    ]
    assert result["totals"]["price_changes"] == 5
    assert list(Product.objects.order_by("sku").values_list("sku", "price", "stock")) == [
        ("A-1", Decimal("12.00"), 9),
        ("A-2", Decimal("20.00"), 0),
        ("B-1", Decimal("7.50"), 3),
        ("B-2", Decimal("1.10"), 8),
    ]


@pytest.mark.parametrize("steps", ["price then stock", "stock twice", "adjust then set back"])
def test_webhook_events_per_step_on_both_routes(operator, steps):
    """One ``product.updated`` (and ``price.changed``) per product and step, as per object."""
    seen = {}
    seed(SEEDED)  # once: PostgreSQL does not roll sequences (product ids) back
    for route in ("staged", "objects"):
        with on_route(route):
            with CaptureQueriesContext(connection) as queries:
                result = process_pipeline(CASES[steps], user=operator)
            assert result["status"] == "succeeded", result
            folded = any(FOLD in q["sql"] for q in queries.captured_queries)
            assert folded == (route == "staged")
            state = (observe(), outbox_rows(), result["steps"], result["price_changes"])
            seen[route] = re.sub(r"pipeline:\d+", "pipeline:N", repr(state))
    assert "'product.updated'" in seen["staged"]
    assert seen["staged"] == seen["objects"]


def test_stock_steps_are_not_folded_while_a_level_has_its_own_threshold(operator):
    """A per-location alert compares the level itself, which one write would skip past."""
    seed(SEEDED)
    Location.objects.create(code="NORTH", name="North")
    with change_context(source="setup"):
        transfer_stock("A-1", "MAIN", "NORTH", 1, user=None)
        set_location_threshold("A-1", "MAIN", 3)
    assert StockLevel.objects.filter(low_stock_threshold__isnull=False).exists()
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(CASES["stock twice"], user=operator)
    assert result["status"] == "succeeded", result
    assert not any(FOLD in q["sql"] for q in queries.captured_queries)
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(CASES["price then stock"], user=operator)
    assert any(FOLD in q["sql"] for q in queries.captured_queries)


def _statements_around_the_write(operator) -> tuple[list[str], int]:
    """The statements of the "price then stock" group on the seeded products, and the index
    of its one product ``UPDATE`` among them."""
    seed(SEEDED)
    product = connection.ops.quote_name(Product._meta.db_table)
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(CASES["price then stock"], user=operator)
    assert result["status"] == "succeeded", result
    sqls = [q["sql"] for q in queries.captured_queries]
    write = next(i for i, sql in enumerate(sqls) if sql.startswith(f"UPDATE {product} SET"))
    return sqls, write


def test_the_effects_read_the_stage_not_the_rewritten_products(operator):
    """After the group's one product ``UPDATE``, its effects (history, ledger, levels,
    alerts) read each step's change rows from the stage alone: names and thresholds were
    staged with the lock. Joined back to the products, every effect rescanned the table
    just rewritten (at 1,000,000 products on PostgreSQL, most of the map's gap to its
    limit), and read the same values."""
    sqls, write = _statements_around_the_write(operator)
    reading = [sql for sql in sqls[write + 1 :] if FOLD in sql]
    assert len(reading) >= 4  # history, ledger, levels, alerts
    product = connection.ops.quote_name(Product._meta.db_table)
    assert not [sql for sql in reading if product in sql]
    assert [
        tuple(row)
        for row in PriceHistory.objects.order_by("id").values_list("sku", "name", "new_price")
    ] == [("A-1", "Seed A-1", Decimal("11.00")), ("B-1", "Seed B-1", Decimal("7.55"))]
    assert list(
        StockAlert.objects.filter(resolved_at__isnull=True)
        .order_by("sku")
        .values_list("sku", "name", "stock", "threshold")
    ) == [("A-1", "Seed A-1", 3, 4)]


@pytest.mark.postgres
def test_the_product_update_runs_without_hash_join_on_postgresql(operator):
    """On PostgreSQL the group's product ``UPDATE`` runs with hash joins off (rows in key
    order: a hash join's batches revisit every page, ``sqlrows.hash_joins_off``); the
    setting is the session's again afterwards."""
    sqls, write = _statements_around_the_write(operator)
    assert "set_config('enable_hashjoin', 'off', true)" in sqls[write - 1]
    assert sqls[write + 1].startswith("SELECT set_config('enable_hashjoin', 'on', true)")
    with connection.cursor() as cursor:
        cursor.execute("SHOW enable_hashjoin")
        assert cursor.fetchone()[0] == "on"


RENAMED = {
    "op": "upsert_products",
    "rows": [
        {"sku": "A-1", "name": "Renamed A-1", "price": "10.00", "low_stock_threshold": 9},
        {"sku": "B-2", "name": "Renamed B-2", "price": "1.00", "low_stock_threshold": 0},
    ],
}


@pytest.mark.parametrize("steps", ["price then stock", "stock twice"])
def test_folded_effects_see_names_and_thresholds_an_earlier_step_wrote(
    recorder,  # noqa: F811
    operator,
    steps,
):
    """A step before the group renames products and moves their thresholds: the group's
    history rows and alert episodes (names, thresholds staged with the lock) carry the
    new ones, as a save per product would."""
    folded = CASES[steps]
    assert_same_effects(recorder, operator, spec(RENAMED, *folded["steps"]), lambda: seed(SEEDED))
    seed(SEEDED)
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(spec(RENAMED, *folded["steps"]), user=operator)
    assert result["status"] == "succeeded", result
    # folded on the SQL route (no user receiver), as the comparison above ran it
    assert any(FOLD in q["sql"] for q in queries.captured_queries) == (not recorder)
