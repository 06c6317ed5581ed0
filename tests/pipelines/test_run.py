"""process_pipeline end to end against the real database: effects, failures, dry runs."""

import copy
from decimal import Decimal

import pytest
from django.core import mail

from app.models import DeletionAudit, PipelineRun, PriceHistory, Product, StockAlert, StockMovement
from app.utils.utils import process_pipeline
from tests.factories import ProductFactory

from .conftest import EXAMPLE

pytestmark = pytest.mark.django_db


def snapshot():
    """Everything a pipeline can change, to prove a failed run changed nothing."""
    return (
        list(Product.objects.order_by("sku").values_list("sku", "name", "price", "stock")),
        PriceHistory.objects.count(),
        StockMovement.objects.count(),
        list(StockAlert.objects.values_list("sku", "resolved_at")),
        DeletionAudit.objects.count(),
    )


def test_example_pipeline_applies_every_step_with_history_alerts_and_audit(operator):
    ProductFactory(sku="OLD-9", name="Old thing", price=Decimal("1.00"), stock=2)

    result = process_pipeline(copy.deepcopy(EXAMPLE), user=operator)

    assert result["status"] == "succeeded", result
    assert [
        (s["op"], s["created"], s["updated"], s["unchanged"], s["deleted"]) for s in result["steps"]
    ] == [
        ("upsert_products", 1, 0, 0, 0),
        ("upsert_products", 1, 0, 0, 0),
        ("set_prices", 0, 1, 0, 0),
        ("adjust_prices", 0, 1, 0, 0),
        ("adjust_stock", 0, 2, 0, 0),
        ("set_stock", 0, 1, 0, 0),
        ("delete_products", 0, 0, 0, 1),
    ]
    laptop, mouse = Product.objects.get(sku="LAP-1"), Product.objects.get(sku="MOU-1")
    assert (laptop.price, laptop.stock) == (Decimal("809.10"), 3)
    assert (mouse.price, mouse.stock) == (Decimal("19.90"), 3)
    assert not Product.objects.filter(sku="OLD-9").exists()

    source = f"pipeline:{result['run_id']}"
    history = list(
        PriceHistory.objects.filter(sku="LAP-1")
        .order_by("id")
        .values_list("old_price", "new_price")
    )
    assert history == [
        (Decimal("999.00"), Decimal("899.00")),
        (Decimal("899.00"), Decimal("809.10")),
    ]
    assert set(PriceHistory.objects.values_list("source", "changed_by")) == {(source, operator.pk)}
    assert [c["new"] for c in result["price_changes"]] == ["899.00", "809.10"]
    ledger = list(
        StockMovement.objects.filter(sku="LAP-1").order_by("id").values_list("delta", "stock_after")
    )
    assert ledger == [(10, 10), (-7, 3)]
    assert sum(StockMovement.objects.filter(sku="MOU-1").values_list("delta", flat=True)) == 3

    # Both products went below the threshold (5): one alert each, reported in the result.
    assert sorted(StockAlert.objects.filter(resolved_at=None).values_list("sku", flat=True)) == [
        "LAP-1",
        "MOU-1",
    ]
    assert sorted(a["sku"] for a in result["alerts"]["opened"]) == ["LAP-1", "MOU-1"]
    assert result["totals"]["alerts_opened"] == 2
    assert result["alerts"]["resolved"] == [{"step": 6, "sku": "OLD-9"}]  # closed by the delete

    audit = DeletionAudit.objects.get()
    assert (audit.object_repr, audit.source, audit.changed_by_id) == (
        "Old thing (OLD-9)",
        source,
        operator.pk,
    )
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert (run.status, run.user, run.name, run.steps_done, run.rows_done) == (
        "succeeded",
        operator,
        "supplier feed 2026-11-24",
        7,
        8,
    )
    assert run.result["totals"] == result["totals"]
    assert run.started_at <= run.finished_at


def test_alert_emails_are_sent_only_after_the_run_commits(
    operator, django_capture_on_commit_callbacks, run_worker
):
    ProductFactory(sku="A-1", stock=20)
    spec = {"steps": [{"op": "adjust_stock", "deltas": {"A-1": -18}}]}
    with django_capture_on_commit_callbacks(execute=True):
        result = process_pipeline(spec, user=operator)
    run_worker()
    assert result["totals"]["alerts_opened"] == 1
    assert [m.subject for m in mail.outbox] == ["Low Stock Alert: " + Product.objects.get().name]


@pytest.mark.parametrize(
    ("steps", "loc", "fragment"),
    [
        (
            [{"op": "set_prices", "prices": {"A-1": "5.00", "NOPE-1": "3.00"}}],
            ["steps", 1, "prices", "NOPE-1"],
            "unknown SKU 'NOPE-1'",
        ),
        (
            [{"op": "adjust_stock", "deltas": {"A-1": -1, "B-1": -51}}],
            ["steps", 1, "deltas", "B-1"],
            "stock of B-1 would go negative: 50 -51 = -1",
        ),
        (
            [{"op": "upsert_products", "csv": "sku,name,price\nN-1,New,1.00\nN-2,Other,12,5x\n"}],
            ["steps", 1, "csv", 3, "*"],
            "expected 3 values, found 4",
        ),
        (
            [{"op": "upsert_products", "csv": "sku,name,price\nN-1,New,1.00\nN-2,Other,abc\n"}],
            ["steps", 1, "csv", 3, "price"],
            "line 3, column price",
        ),
        (
            [{"op": "delete_products", "skus": ["A-1", "GONE-1"]}],
            ["steps", 1, "skus", 1],
            "unknown SKU 'GONE-1'",
        ),
        (
            [{"op": "adjust_prices", "select": {"skus": ["A-1", "X-9"]}, "percent": "5"}],
            ["steps", 1, "select", "skus", 1],
            "unknown SKU 'X-9'",
        ),
    ],
)
def test_business_failure_rolls_back_every_step_and_records_the_run(operator, steps, loc, fragment):
    ProductFactory(sku="A-1", stock=50)
    ProductFactory(sku="B-1", stock=50)
    before = snapshot()
    spec = {
        "steps": [
            {
                "op": "upsert_products",
                "rows": [{"sku": "A-1", "name": "Changed", "price": "1.00", "stock": 1}],
            },
            *steps,
        ]
    }

    result = process_pipeline(spec, user=operator)

    assert result["status"] == "failed"
    # A bad CSV line is bad input (400), like the same value in a JSON row; the rest are
    # business failures (422).
    assert result["error"]["kind"] == ("invalid" if loc[2] == "csv" else "failed")
    assert [e["loc"] for e in result["error"]["errors"]] == [loc]
    assert fragment in result["error"]["errors"][0]["msg"]
    assert f"step 1 ({steps[0]['op']})" in result["error"]["detail"]
    assert snapshot() == before  # the first step was rolled back too
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert run.status == "failed" and run.error["errors"][0]["loc"] == loc


def test_invalid_spec_runs_nothing_and_locates_every_error(operator):
    ProductFactory(sku="A-1")
    before = snapshot()
    result = process_pipeline(
        {
            "steps": [
                {"op": "set_prices", "prices": {"A-1": "-1"}},
                {"op": "adjust_stock", "deltas": {"A-1": "seven"}},
                {"op": "teleport"},
                {
                    "op": "adjust_prices",
                    "select": {"all": True, "sku_prefix": "A"},
                    "percent": "-150",
                },
                {"op": "upsert_products", "rows": [{"sku": "", "name": "x", "price": "1.001"}]},
            ]
        },
        user=operator,
    )
    assert result["status"] == "failed" and result["error"]["kind"] == "invalid"
    locs = [e["loc"] for e in result["error"]["errors"]]
    assert locs == [
        ["steps", 0, "prices", "A-1"],
        ["steps", 1, "deltas", "A-1"],
        ["steps", 2, "op"],
        ["steps", 3, "select"],
        ["steps", 3, "percent"],
        ["steps", 4, "rows", 0, "sku"],
        ["steps", 4, "rows", 0, "price"],
    ]
    assert snapshot() == before
    assert PipelineRun.objects.get(pk=result["run_id"]).status == "failed"


def test_dry_run_returns_the_diff_and_would_be_alerts_but_changes_nothing(operator):
    ProductFactory(sku="A-1", price=Decimal("10.00"), stock=50)
    ProductFactory(sku="B-1", price=Decimal("20.00"), stock=50)
    before = snapshot()
    result = process_pipeline(
        {
            "dry_run": True,
            "steps": [
                {"op": "set_prices", "prices": {"A-1": "12.00"}},
                {
                    "op": "adjust_prices",
                    "select": {"all": True},
                    "percent": "50",
                    "round_to": "0.50",
                },
                {"op": "set_stock", "stock": {"B-1": 1}},
                {"op": "upsert_products", "rows": [{"sku": "C-1", "name": "New", "price": "3.00"}]},
                {"op": "delete_products", "skus": ["A-1"]},
            ],
        },
        user=operator,
    )
    assert result["status"] == "previewed", result
    diff = {d["sku"]: d for d in result["diff"]}
    assert diff["B-1"] == {
        "sku": "B-1",
        "action": "updated",
        "changes": [
            {"field": "price", "before": "20.00", "after": "30.00"},
            {"field": "stock", "before": 50, "after": 1},
        ],
    }
    assert diff["A-1"]["action"] == "deleted"
    assert diff["C-1"]["action"] == "created"
    assert {"field": "price", "before": None, "after": "3.00"} in diff["C-1"]["changes"]
    # C-1 starts with stock 0 and B-1 drops to 1: both alerts would open.
    assert sorted(a["sku"] for a in result["alerts"]["opened"]) == ["B-1", "C-1"]
    assert snapshot() == before
    assert PipelineRun.objects.get(pk=result["run_id"]).status == "previewed"


def test_adjust_prices_rounds_half_up_to_round_to(operator):
    ProductFactory(sku="LAP-1", price=Decimal("999.99"))
    ProductFactory(sku="LAP-2", price=Decimal("0.05"))
    ProductFactory(sku="MOU-1", price=Decimal("10.00"))
    result = process_pipeline(
        {
            "steps": [
                {
                    "op": "adjust_prices",
                    "select": {"sku_prefix": "LAP-"},
                    "percent": "-10",
                    "round_to": "0.05",
                }
            ]
        },
        user=operator,
    )
    assert result["steps"][0]["updated"] == 1
    prices = dict(Product.objects.values_list("sku", "price"))
    # 899.991 -> 900.00 (multiple of 0.05); 0.045 -> 0.05 (half up, so unchanged)
    assert prices == {
        "LAP-1": Decimal("900.00"),
        "LAP-2": Decimal("0.05"),
        "MOU-1": Decimal("10.00"),
    }
    assert result["steps"][0]["unchanged"] == 1


def test_upsert_repeated_sku_applies_in_order_like_repeated_saves(operator):
    result = process_pipeline(
        {
            "steps": [
                {
                    "op": "upsert_products",
                    "csv": "sku,name,price,stock\nR-1,First,1.00,3\nR-1,Second,2.00,9\n",
                }
            ]
        },
        user=operator,
    )
    assert (result["steps"][0]["created"], result["steps"][0]["updated"]) == (1, 1)
    product = Product.objects.get(sku="R-1")
    assert (product.name, product.price, product.stock) == ("Second", Decimal("2.00"), 9)
    assert list(PriceHistory.objects.values_list("old_price", "new_price")) == [
        (Decimal("1.00"), Decimal("2.00"))
    ]
    assert list(StockMovement.objects.order_by("id").values_list("delta", flat=True)) == [3, 6]


def test_unchanged_values_write_nothing(operator):
    ProductFactory(sku="A-1", price=Decimal("10.00"), stock=50)
    result = process_pipeline(
        {
            "steps": [
                {"op": "set_prices", "prices": {"A-1": "10"}},
                {"op": "adjust_stock", "deltas": {"A-1": 0}},
                {
                    "op": "upsert_products",
                    "rows": [{"sku": "A-1", "name": "Product 0", "price": "10.00"}],
                },
            ]
        },
        user=operator,
    )
    assert [s["unchanged"] for s in result["steps"]][:2] == [1, 1]
    assert PriceHistory.objects.count() == 0
    assert StockMovement.objects.filter(source__startswith="pipeline").count() == 0


def test_python_callers_may_pass_decimals(operator):
    ProductFactory(sku="A-1")
    result = process_pipeline({"steps": [{"op": "set_prices", "prices": {"A-1": Decimal("7.5")}}]})
    assert result["status"] == "succeeded"
    assert Product.objects.get().price == Decimal("7.50")
    assert PipelineRun.objects.get().spec["steps"][0]["prices"] == {"A-1": "7.5"}


def test_skipped_csv_rows_count_as_done_like_a_feeds():
    """Progress ends at the rows it started with: a CSV row rejected under
    ``skip_invalid_rows`` is done (as a profile feed's rejected row is), or a finished run
    would show 3 of 4 rows."""
    result = process_pipeline(
        {
            "name": "skip",
            "policy": "skip_invalid_rows",
            "steps": [
                {
                    "op": "upsert_products",
                    "csv": "sku,name,price\nSK-1,A,1.00\nSK-2,,x\nSK-3,C,3.00\nSK-4,D,4.00\n",
                }
            ],
        }
    )
    assert result["status"] == "succeeded" and result["totals"]["rejected"] == 1, result
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert (run.rows_done, run.rows_total) == (4, 4)
