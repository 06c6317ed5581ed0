"""``delete_products``: delete products by SKU (each deletion is audited)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .. import staged
from ..base import SkuRef, StepSpec
from ..registry import register
from ..writer import chunked


@register
class DeleteProducts(StepSpec):
    """Delete each listed SKU; an unknown SKU fails the run."""

    op: Literal["delete_products"]
    skus: list[SkuRef] = Field(min_length=1)

    def size(self, using: str) -> int:
        return len(self.skus)

    def run(self, unit) -> None:
        if staged.applies(unit, deleting=True):
            staged.delete_skus(unit, self.skus, key="skus")
            return
        position = {sku: i for i, sku in enumerate(self.skus)}
        for chunk in chunked(dict.fromkeys(self.skus)):
            found = unit.lock_skus(chunk, lambda s: ("skus", position[s]))
            unit.delete([found[sku] for sku in chunk])
            unit.advance(len(chunk))
