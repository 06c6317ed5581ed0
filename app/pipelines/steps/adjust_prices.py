"""``adjust_prices``: change selected products' prices by a percentage, then round."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from pydantic import Field

from ...models import Product
from .. import staged
from ..base import MAX_PRICE, Select, StepSpec
from ..registry import register

CENT = Decimal("0.01")


@register
class AdjustPrices(StepSpec):
    """New price = old x (1 + percent/100), rounded half-up to a multiple of ``round_to``."""

    op: Literal["adjust_prices"]
    select: Select
    percent: Annotated[Decimal, Field(ge=-100, le=100000, allow_inf_nan=False)]
    round_to: Annotated[Decimal, Field(gt=0, max_digits=12, decimal_places=2)] = CENT

    def size(self, using: str) -> int:
        if self.select.skus is not None:
            return len(self.select.skus)
        qs = Product._base_manager.db_manager(using).all()
        if self.select.sku_prefix is not None:
            qs = qs.filter(sku__startswith=self.select.sku_prefix)
        return qs.count()

    def new_price(self, old: Decimal) -> Decimal:
        scaled = old * (100 + self.percent) / 100
        steps = (scaled / self.round_to).to_integral_value(rounding=ROUND_HALF_UP)
        return (steps * self.round_to).quantize(CENT)

    def new_prices(self, unit, items: list[tuple[str, Decimal]]) -> list[Decimal]:
        """The new price of each ``(sku, old price)`` of a chunk; one too large fails the
        step, naming the chunk's SKUs that are. Both routes compute prices here."""
        memo: dict[Decimal, Decimal] = {}  # equal old prices (10.5, 10.50) give one new one
        new = []
        for _, old in items:
            price = memo.get(old)
            if price is None:
                price = memo[old] = self.new_price(old)
            new.append(price)
        too_big = [
            (("select",), f"new price of {sku} ({price}) is too large")
            for (sku, _), price in zip(items, new, strict=True)
            if price > MAX_PRICE
        ]
        if too_big:
            raise unit.failure(too_big)
        return new

    def run(self, unit) -> None:
        if staged.applies(unit):
            staged.write_selected(
                unit, "price", self.select, lambda items: self.new_prices(unit, items)
            )
            return
        for chunk in unit.iter_selected(self.select):
            prices = self.new_prices(unit, [(product.sku, product.price) for product in chunk])
            for product, price in zip(chunk, prices, strict=True):
                product.price = price
            unit.save(chunk)
            unit.advance(len(chunk))
