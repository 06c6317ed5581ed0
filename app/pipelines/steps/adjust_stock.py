"""``adjust_stock``: add signed deltas to products' stock; stock may never go negative."""

from __future__ import annotations

from typing import Literal

from .. import located, staged
from ..base import DeltaMap, SkuRef, StepSpec, stock_adjustment_error
from ..folded import MapWrite
from ..registry import register
from ..writer import chunked


@register
class AdjustStock(StepSpec):
    """Add each delta to the SKU's current stock; a result below zero fails the run. With
    ``location`` (a location code) the deltas apply there (default: the default location)."""

    op: Literal["adjust_stock"]
    deltas: DeltaMap
    location: SkuRef | None = None

    def size(self, using: str) -> int:
        return len(self.deltas)

    def map_write(self) -> MapWrite | None:
        if self.location is not None:
            return None
        return MapWrite("stock", self.deltas, key="deltas", add=True)

    def run(self, unit) -> None:
        if self.location is not None:
            located.run_at_location(
                unit,
                self.location,
                self.deltas,
                key="deltas",
                absolute=False,
                then=lambda deltas: self.apply(unit, deltas),
            )
            return
        located.check_totals(unit, self.deltas, key="deltas", absolute=False)
        self.apply(unit, self.deltas)

    def apply(self, unit, deltas: dict[str, int]) -> None:
        if staged.applies(unit):
            staged.write_map(unit, "stock", deltas, key="deltas", add=True)
            return
        for chunk in chunked(deltas.items()):
            found = unit.lock_skus([sku for sku, _ in chunk], lambda s: ("deltas", s))
            bad = []
            for sku, delta in chunk:
                product = found[sku]
                error = stock_adjustment_error(sku, product.stock, delta)
                if error:
                    bad.append((("deltas", sku), error))
                product.stock += delta
            if bad:
                raise unit.failure(bad)
            unit.save(found[sku] for sku, _ in chunk)
            unit.advance(len(chunk))
