"""``set_stock``: set products' stock to an absolute count (e.g. after a stocktake)."""

from __future__ import annotations

from typing import Literal

from .. import located, staged
from ..base import SkuRef, StepSpec, StockMap
from ..folded import MapWrite
from ..registry import register
from ..writer import chunked
from .adjust_stock import AdjustStock


@register
class SetStock(StepSpec):
    """Set the stock of each listed SKU; an unknown SKU fails the run. With ``location``
    (a location code), set the quantity there; the total moves by the difference."""

    op: Literal["set_stock"]
    stock: StockMap
    location: SkuRef | None = None

    def size(self, using: str) -> int:
        return len(self.stock)

    def map_write(self) -> MapWrite | None:
        return None if self.location is not None else MapWrite("stock", self.stock, key="stock")

    def run(self, unit) -> None:
        if self.location is not None:
            adjust = AdjustStock.model_construct(op="adjust_stock", deltas={}, location=None)
            located.run_at_location(
                unit,
                self.location,
                self.stock,
                key="stock",
                absolute=True,
                then=lambda deltas: adjust.apply(unit, deltas),
            )
            return
        located.check_totals(unit, self.stock, key="stock", absolute=True)
        if staged.applies(unit):
            staged.write_map(unit, "stock", self.stock, key="stock")
            return
        for chunk in chunked(self.stock.items()):
            found = unit.lock_skus([sku for sku, _ in chunk], lambda s: ("stock", s))
            for sku, stock in chunk:
                found[sku].stock = stock
            unit.save(found[sku] for sku, _ in chunk)
            unit.advance(len(chunk))
