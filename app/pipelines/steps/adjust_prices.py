"""``adjust_prices``: change selected products' prices by a percentage, then round."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Annotated, Literal

from pydantic import Field

from ...models import Product
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

    def run(self, unit) -> None:
        for chunk in unit.iter_selected(self.select):
            too_big = []
            for product in chunk:
                product.price = self.new_price(product.price)
                if product.price > MAX_PRICE:
                    too_big.append(
                        (("select",), f"new price of {product.sku} ({product.price}) is too large")
                    )
            if too_big:
                raise unit.failure(too_big)
            unit.save(chunk)
            unit.advance(len(chunk))
