"""manage.py run_pipeline / fail_stale_runs, run as a user would."""

import json
from datetime import timedelta
from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from app.models import PipelineRun, Product
from app.pipelines.service import fail_stale_runs
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db


def run_command(*args):
    out = StringIO()
    call_command("run_pipeline", *args, stdout=out)
    return out.getvalue()


def test_runs_spec_file_with_csv_file_and_prints_summary(tmp_path):
    ProductFactory(sku="MOU-1", price=Decimal("20.00"), stock=40)
    (tmp_path / "feed.csv").write_text(
        "sku,name,price,stock\nLAP-1,Laptop,999.00,10\nMOU-1,Mouse,19.90,\n"
    )
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps(
            {
                "name": "nightly",
                "steps": [
                    {"op": "upsert_products", "csv_file": "feed.csv"},
                    {"op": "adjust_stock", "deltas": {"LAP-1": -2}},
                ],
            }
        )
    )
    output = run_command(str(spec))
    assert "nightly: succeeded" in output
    assert "upsert_products" in output and "price changes: 1" in output
    assert dict(Product.objects.values_list("sku", "stock")) == {"LAP-1": 8, "MOU-1": 40}


def test_dry_run_flag_prints_diff_and_changes_nothing(tmp_path):
    ProductFactory(sku="A-1", price=Decimal("10.00"))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"steps": [{"op": "set_prices", "prices": {"A-1": "12.00"}}]}))
    output = run_command(str(spec), "--dry-run")
    assert "previewed (dry run, rolled back)" in output
    assert "A-1: price: 10.00 -> 12.00" in output
    assert Product.objects.get().price == Decimal("10.00")


def test_failure_exits_non_zero_with_located_errors(tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"steps": [{"op": "set_stock", "stock": {"A-1": -1}}]}))
    out = StringIO()
    with pytest.raises(CommandError, match="nothing was changed"):
        call_command("run_pipeline", str(spec), stdout=out)
    assert "steps.0.stock.A-1: Input should be greater than or equal to 0" in out.getvalue()


def test_fail_stale_runs_marks_only_runs_without_heartbeat():
    old = timezone.now() - timedelta(hours=1)
    stale = PipelineRun.objects.create(spec={}, status="running", heartbeat_at=old)
    live = PipelineRun.objects.create(spec={}, status="running", heartbeat_at=timezone.now())
    done = PipelineRun.objects.create(spec={}, status="succeeded", heartbeat_at=old)

    assert fail_stale_runs() == 1

    stale.refresh_from_db()
    assert stale.status == "failed" and stale.error["kind"] == "abandoned"
    assert PipelineRun.objects.get(pk=live.pk).status == "running"
    assert PipelineRun.objects.get(pk=done.pk).status == "succeeded"
    out = StringIO()
    call_command("fail_stale_runs", "--minutes", "0", stdout=out)
    assert "1 stale pipeline run(s) marked failed." in out.getvalue()
