"""Issue 11: the step base class matches how the runner calls it, so a new step type that
relies on the base class (no ``size`` of its own) runs."""

from __future__ import annotations

from decimal import Decimal
from typing import Literal

import pytest

from app.models import PipelineRun, PriceHistory, Product
from app.pipelines.base import StepSpec
from app.pipelines.service import execute
from app.pipelines.spec import PipelineSpec


class RoundPrices(StepSpec):
    """A new step type written against the base class only: rounds every price up."""

    op: Literal["round_prices"]

    def run(self, unit) -> None:
        for chunk in unit.iter_selected(_ALL):
            for product in chunk:
                product.price = product.price.to_integral_value(rounding="ROUND_CEILING")
            unit.save(chunk)
            unit.advance(len(chunk))


class _Select:
    skus = None
    all = True
    sku_prefix = None


_ALL = _Select()


@pytest.mark.django_db
def test_a_step_relying_on_the_base_class_runs_with_history():
    Product.objects.create(sku="R-1", name="R", price=Decimal("1.20"), stock=3)
    spec = PipelineSpec.model_construct(
        name="base", dry_run=False, mode="sync", steps=[RoundPrices(op="round_prices")]
    )
    run = PipelineRun.objects.create(name="base", spec={"steps": [{"op": "round_prices"}]})

    result = execute(run, spec)

    run.refresh_from_db()
    assert run.status == PipelineRun.Status.SUCCEEDED, run.error
    assert result["steps"][0]["updated"] == 1
    assert run.rows_total == 0  # the base class's size: nothing known up front
    assert Product.objects.get(sku="R-1").price == Decimal("2.00")
    change = PriceHistory.objects.get(sku="R-1")
    assert (change.old_price, change.new_price) == (Decimal("1.20"), Decimal("2.00"))
