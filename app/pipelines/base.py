"""Building blocks shared by the spec and the step modules."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from ..models import MAX_STOCK

Sku = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
CENT = Decimal("0.01")
# Product.price is DECIMAL(12, 2) and must not be negative; "9.9" and 9.90 both mean 9.90.
Price = Annotated[
    Decimal,
    Field(ge=0, max_digits=12, decimal_places=2, allow_inf_nan=False),
    AfterValidator(lambda d: d.quantize(CENT)),
]
Stock = Annotated[int, Field(ge=0, le=MAX_STOCK, strict=False)]
Delta = Annotated[int, Field(ge=-MAX_STOCK, le=MAX_STOCK)]

MAX_PRICE = Decimal("9999999999.99")


def stock_adjustment_error(sku: str, stock: int, delta: int) -> str | None:
    """Why ``stock + delta`` is not a stock ``sku`` may have, or ``None`` if it is one."""
    new = stock + delta
    if new < 0:
        return f"stock of {sku} would go negative: {stock} {delta:+d} = {new}"
    if new > MAX_STOCK:
        return f"stock of {sku} would exceed {MAX_STOCK}"
    return None


class StepFailure(Exception):
    """A business rule failed while a step ran: the whole run is rolled back (HTTP 422)."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__("; ".join(e["msg"] for e in errors))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Select(Strict):
    """Which products a step applies to: exactly one of ``skus``, ``sku_prefix``, ``all``."""

    skus: list[Sku] | None = Field(default=None, min_length=1)
    sku_prefix: Sku | None = None
    all: Literal[True] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Select:
        given = [k for k in ("skus", "sku_prefix", "all") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'skus', 'sku_prefix' or 'all: true'")
        return self


class StepSpec(Strict):
    """Base of every step type. A subclass declares ``op: Literal[...]`` and implements ``run``."""

    op: str

    def size(self) -> int:
        """How many items the step will process (for progress), as far as known up front."""
        return 0

    def run(self, unit) -> None:  # unit: app.pipelines.writer.StepUnit
        raise NotImplementedError
