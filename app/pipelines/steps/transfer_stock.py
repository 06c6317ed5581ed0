"""``transfer_stock``: move units of products between two locations (totals unchanged)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from ...core.domain import MAX_STOCK
from ...services.stock import StockAdjustmentRefused, transfer_many
from ..base import SkuRef, StepSpec
from ..registry import register

Quantity = Annotated[int, Field(ge=1, le=MAX_STOCK)]


@register
class TransferStock(StepSpec):
    """Move each listed quantity from ``from_location`` to ``to_location`` (codes); a SKU
    with fewer units available at the source, or unknown, fails the run."""

    op: Literal["transfer_stock"]
    from_location: SkuRef
    to_location: SkuRef
    quantities: dict[SkuRef, Quantity] = Field(min_length=1)

    def size(self, using: str) -> int:
        return len(self.quantities)

    def run(self, unit) -> None:
        try:
            problems, moved = transfer_many(
                self.quantities, self.from_location, self.to_location, using=unit.using
            )
        except StockAdjustmentRefused as exc:
            raise unit.failure([((exc.field,), exc.message)]) from exc
        if problems:
            raise unit.failure([(("quantities", sku), msg) for sku, msg in problems])
        unit.counts.updated += moved
        unit.advance(len(self.quantities))
