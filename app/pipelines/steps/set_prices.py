"""``set_prices``: give products (by SKU) a new price."""

from __future__ import annotations

from typing import Literal

from .. import staged
from ..base import PriceMap, StepSpec
from ..folded import MapWrite
from ..registry import register
from ..writer import chunked


@register
class SetPrices(StepSpec):
    """Set the price of each listed SKU; an unknown SKU fails the run."""

    op: Literal["set_prices"]
    prices: PriceMap

    def size(self, using: str) -> int:
        return len(self.prices)

    def map_write(self) -> MapWrite:
        return MapWrite("price", self.prices, key="prices")

    def run(self, unit) -> None:
        if staged.applies(unit):
            staged.write_map(unit, "price", self.prices, key="prices")
            return
        for chunk in chunked(self.prices.items()):
            found = unit.lock_skus([sku for sku, _ in chunk], lambda s: ("prices", s))
            for sku, price in chunk:
                found[sku].price = price
            unit.save(found[sku] for sku, _ in chunk)
            unit.advance(len(chunk))
