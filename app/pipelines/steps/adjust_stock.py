"""``adjust_stock``: add signed deltas to products' stock; stock may never go negative."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import staged
from ..base import MAX_STOCK, Delta, Sku, StepSpec
from ..registry import register
from ..writer import chunked


@register
class AdjustStock(StepSpec):
    """Add each delta to the SKU's current stock; a result below zero fails the run."""

    op: Literal["adjust_stock"]
    deltas: dict[Sku, Delta] = Field(min_length=1)

    def size(self, using: str) -> int:
        return len(self.deltas)

    def run(self, unit) -> None:
        if staged.applies(unit):
            staged.write_map(unit, "stock", self.deltas, key="deltas", add=True)
            return
        for chunk in chunked(self.deltas.items()):
            found = unit.lock_skus([sku for sku, _ in chunk], lambda s: ("deltas", s))
            bad = []
            for sku, delta in chunk:
                product = found[sku]
                new = product.stock + delta
                if new < 0:
                    bad.append(
                        (
                            ("deltas", sku),
                            f"stock of {sku} would go negative: {product.stock} {delta:+d} = {new}",
                        )
                    )
                elif new > MAX_STOCK:
                    bad.append((("deltas", sku), f"stock of {sku} would exceed {MAX_STOCK}"))
                product.stock = new
            if bad:
                raise unit.failure(bad)
            unit.save(found[sku] for sku, _ in chunk)
            unit.advance(len(chunk))
