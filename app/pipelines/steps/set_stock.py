"""``set_stock``: set products' stock to an absolute count (e.g. after a stocktake)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import staged
from ..base import SkuRef, StepSpec, Stock
from ..registry import register
from ..writer import chunked


@register
class SetStock(StepSpec):
    """Set the stock of each listed SKU; an unknown SKU fails the run."""

    op: Literal["set_stock"]
    stock: dict[SkuRef, Stock] = Field(min_length=1)

    def size(self, using: str) -> int:
        return len(self.stock)

    def run(self, unit) -> None:
        if staged.applies(unit):
            staged.write_map(unit, "stock", self.stock, key="stock")
            return
        for chunk in chunked(self.stock.items()):
            found = unit.lock_skus([sku for sku, _ in chunk], lambda s: ("stock", s))
            for sku, stock in chunk:
                found[sku].stock = stock
            unit.save(found[sku] for sku, _ in chunk)
            unit.advance(len(chunk))
