"""``upsert_products``: create or update products from JSON rows, CSV or XLSX (inline or a
file), the supplier's columns mapped by an import profile (``app.pipelines.feeds``)."""

from __future__ import annotations

from collections.abc import Iterator
from operator import itemgetter
from pathlib import Path
from typing import Any, Literal

from django.db import connections
from pydantic import Field, PrivateAttr, ValidationInfo, field_validator, model_validator

from ...core.feeds import FeedProfile
from ...models import ImportProfile, Product
from .. import located, staged, upserts
from ..base import Label, StepSpec
from ..feeds import (
    FeedError,
    Rejection,
    csv_records,
    iter_feed,
    read_ahead,
    xlsx_bytes,
    xlsx_records,
)
from ..registry import register
from ..rows import (
    ProductRow,
    RowError,
    RowValues,
    count_data_lines,
    header_errors,
    iter_csv_blocks,
    open_csv,
    read_header,
)
from ..writer import CHUNK, ReaderUnit


@register
class UpsertProducts(StepSpec):
    """Create missing SKUs and update existing ones (name, price, and stock/threshold if given).

    Exactly one source: ``rows`` (JSON objects), ``csv`` (text with a header line),
    ``xlsx`` (the file in base64), or ``csv_file``/``xlsx_file`` (a path; only the
    ``run_pipeline`` command accepts them, never the HTTP API). Without ``profile`` a CSV has
    the columns ``sku,name,price[,stock,low_stock_threshold]``; with one, the profile maps
    the supplier's columns (XLSX always needs one). A SKU repeated in the input is applied in
    order, like repeated saves.
    """

    op: Literal["upsert_products"]
    # Declared first: the CSV validators below need to know whether a profile maps the header.
    profile: Label | None = Field(default=None, description="name of an import profile")
    rows: list[ProductRow] | None = Field(default=None, min_length=1)
    csv: str | None = None
    csv_file: str | None = None
    xlsx: str | None = Field(default=None, description="an XLSX file, base64")
    xlsx_file: str | None = None
    sheet: Label | None = Field(default=None, description="XLSX sheet (default: the profile's)")
    _feed: FeedProfile | None = PrivateAttr(default=None)

    @field_validator("profile")
    @classmethod
    def _profile(cls, value: str | None) -> str | None:
        if value is not None and not ImportProfile.objects.filter(name=value).exists():
            raise ValueError(f"no import profile named {value!r}")
        return value

    @field_validator("xlsx")
    @classmethod
    def _xlsx(cls, value: str | None) -> str | None:
        if value is not None:
            xlsx_bytes(value)
        return value

    @field_validator("xlsx_file")
    @classmethod
    def _xlsx_file(cls, value: str | None, info: ValidationInfo) -> str | None:
        return None if value is None else _trusted_path(value, info, "xlsx_file", "xlsx")

    @field_validator("csv")
    @classmethod
    def _csv_header(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and info.data.get("profile") is None:
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
        path = _trusted_path(value, info, "csv_file", "csv")
        if info.data.get("profile") is not None:
            return path
        with open_csv(path=str(path)) as stream:
            try:
                errors = header_errors(read_header(stream))
            except RowError as exc:
                raise ValueError(str(exc)) from None
        if errors:
            raise ValueError("; ".join(errors))
        return path

    @model_validator(mode="after")
    def _one_source(self) -> UpsertProducts:
        given = [k for k in SOURCES if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of 'rows', 'csv', 'csv_file', 'xlsx' or 'xlsx_file'")
        if self.profile is None and given[0] in ("xlsx", "xlsx_file"):
            raise ValueError("an XLSX feed needs a 'profile' mapping its columns")
        if self.profile is not None and given[0] == "rows":
            raise ValueError("a profile maps a file's columns: give 'csv', 'xlsx' or a file")
        if self.profile is not None:
            self._feed = ImportProfile.objects.get(name=self.profile).feed()
        return self

    @property
    def source(self) -> str:
        return next(k for k in SOURCES if getattr(self, k) is not None)

    def size(self, using: str) -> int:
        if self.rows is not None:
            return len(self.rows)
        if self.xlsx is not None or self.xlsx_file is not None:
            return 0  # unknown until read (XLSX dimensions are often missing)
        lines = count_data_lines(text=self.csv, path=self.csv_file)
        return max(lines - (self._feed.header_row - 1 if self._feed else 0), 0)

    def _records(self):
        feed = self._feed
        if self.xlsx is not None:
            return xlsx_records(feed, data=xlsx_bytes(self.xlsx), sheet=self.sheet or "")
        if self.xlsx_file is not None:
            return xlsx_records(feed, path=self.xlsx_file, sheet=self.sheet or "")
        return csv_records(feed, text=self.csv, path=self.csv_file)

    def _items(self, unit, *, as_values: bool = False) -> Iterator[Any]:
        """The rows, validated, as ``ProductRow`` models or (``as_values``) ``RowValues``."""
        for block in self._blocks(unit, as_values=as_values):
            yield from block

    def _blocks(
        self, unit, *, as_values: bool = False, feed_ahead: bool = True
    ) -> Iterator[list[Any]]:
        """``_items``, a list at a time: JSON rows all at once, a CSV's as
        ``iter_csv_blocks`` reads them, a mapped feed's one by one (a chunk of them is then
        taken without a Python step per row). A mapped feed is read by a thread of its own
        (``read_ahead``) unless ``feed_ahead`` is false: the caller reads in one already."""
        if self.rows is not None:
            yield [row.values() if as_values else row for row in self.rows]
            return
        key = self.source
        skip = unit.state.policy == "skip_invalid_rows"
        if self._feed is not None:
            unit.note_fingerprint(self._feed.fingerprint())
            items = iter_feed(self._feed, self._records())
            rows = read_ahead(items) if feed_ahead else items
            try:
                for _number, item in rows:
                    if isinstance(item, Rejection):
                        if not skip:
                            raise _invalid(unit, key, item.row, item.column, str(item))
                        unit.reject(item)
                        unit.advance(1)
                        continue
                    yield [item.values() if as_values else item]
            except FeedError as exc:
                raise _invalid(unit, key, exc.row, exc.column or "*", str(exc)) from None
            finally:
                # The file, when the step stops early: ``read_ahead`` stops its thread,
                # which closes the feed; a feed read here is closed itself.
                rows.close()
            return

        def rejected(rejection: Rejection) -> None:  # done, as a feed's rejected row is
            unit.reject(rejection)
            unit.advance(1)

        with open_csv(text=self.csv, path=self.csv_file) as stream:
            try:
                for found in iter_csv_blocks(
                    stream, skip=rejected if skip else None, as_values=as_values
                ):
                    yield list(map(itemgetter(1), found))
            except RowError as exc:
                raise _invalid(unit, key, exc.line, exc.column, str(exc)) from None

    def run(self, unit) -> None:
        ends = upserts.table_ends(unit)
        if staged.applies(unit):
            self._run_staged(unit)
        else:
            self._run_objects(unit)
        upserts.analyze_grown(unit, ends)

    def _run_staged(self, unit) -> None:
        """The SQL route (``app.pipelines.upserts``): chunks of distinct SKUs (``_chunks``),
        read and built a chunk ahead by a thread of their own (``read_ahead``) while the
        chunk before is written: parsing and checking the input is Python, writing mostly
        waits for the database (SQLite's and psycopg's calls release the GIL), so the two
        overlap on a second core. The reader touches no database; what it would change
        on the unit is replayed here, in order, before the chunk it came with."""
        vendor = connections[unit.using].vendor
        limit, pg = upserts.STAGE_CHUNKS[vendor], vendor == "postgresql"
        reader = ReaderUnit(unit)

        def read() -> Iterator[tuple[list, upserts.StageRows | None]]:
            try:
                for chunk in self._chunks(reader, pg, limit):
                    yield reader.take(), chunk
            except Exception:
                yield reader.take(), None  # the rows rejected before the error
                raise
            yield reader.take(), None

        for calls, chunk in read_ahead(read(), batch=1, depth=1):
            reader.replay(calls)
            if chunk is not None:
                upserts.write_rows(unit, chunk, key=self.source)

    def _chunks(self, unit, pg: bool, limit: int) -> Iterator[upserts.StageRows]:
        """The rows as chunks of at most ``limit`` distinct SKUs (a repeated SKU
        starts a new chunk, so it is applied after the earlier row, like repeated saves),
        each kept as the stage's text (``upserts.StageRows``), taken in ``STAGE_ADD`` rows
        at a time. The first holds at most ``STAGE_FIRST_CHUNK``: nothing is written while
        it is read."""
        chunk, size = upserts.StageRows(pg), min(limit, upserts.STAGE_FIRST_CHUNK)
        taken: dict[str, RowValues] = {}  # rows of the chunk not added to it yet
        # This runs in ``_run_staged``'s reader thread: a feed needs no second one.
        for block in self._blocks(unit, as_values=True, feed_ahead=False):
            skus = list(map(itemgetter(0), block))
            if (
                len(chunk) + len(taken) + len(block) <= size
                and len(set(skus)) == len(skus)
                and taken.keys().isdisjoint(skus)
                and chunk.skus.isdisjoint(skus)
            ):  # the whole block (new SKUs, room for all): as row by row below, at once
                taken.update(zip(skus, block, strict=True))
            else:
                for row in block:
                    if row[0] in taken or row[0] in chunk or len(chunk) + len(taken) >= size:
                        chunk.add(list(taken.values()))
                        yield chunk
                        chunk, taken, size = upserts.StageRows(pg), {}, limit
                    taken[row[0]] = row
            if len(taken) >= upserts.STAGE_ADD:
                chunk.add(list(taken.values()))
                taken = {}
        chunk.add(list(taken.values()))
        if len(chunk):
            yield chunk

    def _run_objects(self, unit) -> None:
        """The object route: a ``Product`` per row, saved in chunks (a repeated SKU starts
        a new chunk, so it is applied after the earlier row, like repeated saves)."""
        chunk: dict[str, ProductRow] = {}
        for row in self._items(unit):
            if row.sku in chunk or len(chunk) >= CHUNK:
                self._apply(unit, list(chunk.values()), self.source)
                chunk = {}
            chunk[row.sku] = row
        if chunk:
            self._apply(unit, list(chunk.values()), self.source)

    @staticmethod
    def _apply(unit, rows: list[ProductRow], key: str) -> None:
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
        # A stock is a total at the default location: never below the other locations'.
        stocks = {row.sku: row.stock for row in rows if row.stock is not None}
        stocked = [p for p in changed if p.sku in stocks]
        located.check_totals(
            unit,
            {p.sku: stocks[p.sku] for p in stocked},
            key=key,
            absolute=True,
            product_ids=[p.pk for p in stocked],
        )
        unit.create(new, key=key)
        unit.save(changed)
        unit.advance(len(rows))


SOURCES = ("rows", "csv", "csv_file", "xlsx", "xlsx_file")


def _invalid(unit, key: str, row: int, column: str, msg: str):
    """Bad input, as the same value in a JSON row would be (400), not a business failure;
    the run is still recorded."""
    failure = unit.failure([((key, row, column), msg)])
    failure.kind = "invalid"
    return failure


def _trusted_path(value: str, info: ValidationInfo, key: str, instead: str) -> str:
    context = info.context or {}
    if not context.get("allow_files"):
        raise ValueError(f"{key} is only accepted by the run_pipeline command; send {instead}")
    path = Path(context.get("base_dir") or ".") / value
    if not path.is_file():
        raise ValueError(f"no such file: {path}")
    return str(path.resolve())
