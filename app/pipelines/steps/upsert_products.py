"""``upsert_products``: create or update products from JSON rows or CSV (inline or a file)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from ...models import Product
from ..base import StepSpec
from ..registry import register
from ..rows import (
    ProductRow,
    RowError,
    count_data_lines,
    header_errors,
    iter_csv_rows,
    open_csv,
    read_header,
)
from ..writer import CHUNK


@register
class UpsertProducts(StepSpec):
    """Create missing SKUs and update existing ones (name, price, and stock/threshold if given).

    Exactly one source: ``rows`` (JSON objects), ``csv`` (text with a header line) or
    ``csv_file`` (a path; only the ``run_pipeline`` command accepts it, never the HTTP API).
    A SKU repeated in the input is applied in order, like repeated saves.
    """

    op: Literal["upsert_products"]
    rows: list[ProductRow] | None = Field(default=None, min_length=1)
    csv: str | None = None
    csv_file: str | None = None

    @field_validator("csv")
    @classmethod
    def _csv_header(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                errors = header_errors(read_header(open_csv(text=value)))
            except RowError as exc:
                raise ValueError(str(exc)) from None
            if errors:
                raise ValueError("; ".join(errors))
        return value

    @field_validator("csv_file")
    @classmethod
    def _csv_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        context = info.context or {}
        if not context.get("allow_files"):
            raise ValueError("csv_file is only accepted by the run_pipeline command; send csv")
        path = Path(context.get("base_dir") or ".") / value
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        with open_csv(path=str(path)) as stream:
            try:
                errors = header_errors(read_header(stream))
            except RowError as exc:
                raise ValueError(str(exc)) from None
        if errors:
            raise ValueError("; ".join(errors))
        return str(path.resolve())

    @model_validator(mode="after")
    def _one_source(self) -> UpsertProducts:
        given = [k for k in ("rows", "csv", "csv_file") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'rows', 'csv' or 'csv_file'")
        return self

    def size(self, using: str) -> int:
        if self.rows is not None:
            return len(self.rows)
        return count_data_lines(text=self.csv, path=self.csv_file)

    def _items(self, unit) -> Iterator[ProductRow]:
        if self.rows is not None:
            yield from self.rows
            return
        with open_csv(text=self.csv, path=self.csv_file) as stream:
            key = "csv" if self.csv is not None else "csv_file"
            try:
                for _line, row in iter_csv_rows(stream):
                    yield row
            except RowError as exc:
                # Bad input, as the same value in a JSON row would be (400), not a business
                # failure; the run is still recorded.
                failure = unit.failure([((key, exc.line, exc.column), str(exc))])
                failure.kind = "invalid"
                raise failure from None

    def run(self, unit) -> None:
        chunk: dict[str, ProductRow] = {}
        for row in self._items(unit):
            if row.sku in chunk or len(chunk) >= CHUNK:
                self._apply(unit, list(chunk.values()))
                chunk = {}
            chunk[row.sku] = row
        if chunk:
            self._apply(unit, list(chunk.values()))

    @staticmethod
    def _apply(unit, rows: list[ProductRow]) -> None:
        existing = unit.lock_existing([row.sku for row in rows])
        new: list[Product] = []
        changed: list[Product] = []
        for row in rows:
            product = existing.get(row.sku)
            if product is None:
                values: dict[str, Any] = {
                    "sku": row.sku,
                    "name": row.name,
                    "price": row.price,
                    "stock": row.stock or 0,
                }
                if row.low_stock_threshold is not None:
                    values["low_stock_threshold"] = row.low_stock_threshold
                new.append(Product(**values))
                continue
            product.name = row.name
            product.price = row.price
            if row.stock is not None:
                product.stock = row.stock
            if row.low_stock_threshold is not None:
                product.low_stock_threshold = row.low_stock_threshold
            changed.append(product)
        unit.create(new)
        unit.save(changed)
        unit.advance(len(rows))
