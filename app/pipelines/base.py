"""Building blocks shared by the spec and the step modules."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

# The field rules are the domain's (app.core.domain), shared with the API, forms and models:
# rows that create or update a product use ``Sku``/``Name``; steps that name existing
# products use ``SkuRef`` (any stored SKU, so legacy rows can still be changed or deleted).
from ..core.domain import (  # noqa: F401 (re-exported for the step modules)
    MAX_PRICE,
    Delta,
    DeltaMap,
    Label,
    Name,
    Price,
    PriceMap,
    Sku,
    SkuRef,
    Stock,
    StockMap,
    Threshold,
    stock_adjustment_error,
)


class StepFailure(Exception):
    """A step failed: the whole run is rolled back. ``kind`` is ``failed`` for a business
    rule (HTTP 422) and ``invalid`` for input found bad while streaming it, such as a CSV
    cell (HTTP 400, like the same value in a JSON row)."""

    def __init__(self, errors: list[dict[str, Any]], kind: str = "failed") -> None:
        self.errors = errors
        self.kind = kind
        super().__init__("; ".join(e["msg"] for e in errors))


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Select(Strict):
    """Which products a step applies to: exactly one of ``skus``, ``sku_prefix``, ``all``."""

    skus: list[SkuRef] | None = Field(default=None, min_length=1)
    sku_prefix: SkuRef | None = None
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

    def size(self, using: str) -> int:
        """How many items the step will process on database ``using`` (for progress), as
        far as known up front; the runner calls it before the run starts."""
        return 0

    def map_write(self):  # -> app.pipelines.folded.MapWrite | None
        """What the step writes if it is a map step that may be folded with its neighbours
        into one product write (``app.pipelines.folded``); ``None``: run it on its own."""
        return None

    def run(self, unit) -> None:  # unit: app.pipelines.writer.StepUnit
        """Do the step's work through ``unit`` (locked reads, tracked writes, counts)."""
        raise NotImplementedError
