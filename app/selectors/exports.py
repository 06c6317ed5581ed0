"""Exports: the rows of a dataset (products, price history, stock ledger, alerts) as a
streamed CSV or XLSX file, filtered by SKU prefix and date range.

Rows are read in keyset chunks (``WHERE key > last ORDER BY key LIMIT n``), never as one
queryset and never with a server-side cursor (which a transaction-pooling PgBouncer does
not allow), so memory stays constant at any size. Chunks are separate queries: a row
changed during a long export shows the state of the moment its chunk was read; every row
still appears exactly once (the key is unique and never changes).

Cells are neutralised against formula injection by ``app.core.spreadsheet``; columns keep
their type (numbers stay numbers).

The products export ends with one stock column per location (``product_stock_columns``),
known only when an export starts: ``Dataset.columns_now()`` resolves them, and each chunk
of products is read together with its stock levels in one statement (one snapshot, so the
location columns sum to ``stock``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from ..core.domain import sku_ref_problem
from ..core.spreadsheet import CSV_CONTENT_TYPE, XLSX_CONTENT_TYPE, csv_chunks, xlsx_chunks
from ..models import Location, PriceHistory, Product, StockAlert, StockLevel, StockMovement

CHUNK_ROWS = 2000
_PLUS_AS_SPACE = re.compile(r"(T\d\d:\d\d(?::\d\d(?:\.\d+)?)?) (\d\d(?::?\d\d)?)$")
FORMATS = ("csv", "xlsx")


class InvalidExportParameter(ValueError):
    """A bad filter value; ``param`` names the query parameter."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param
        self.message = message


@dataclass(frozen=True)
class Column:
    header: str
    field: str  # a values_list() path
    convert: Callable[[Any], Any] | None = None  # applied to the stored value


@dataclass(frozen=True)
class Computed:
    """A column computed in Python from other columns of the row (exact on SQLite too)."""

    header: str
    compute: Callable[[dict[str, Any]], Any]
    needs: tuple[str, ...]


@dataclass(frozen=True)
class LocationStock:
    """A product's stock at one location (0 where it holds none): a column of the products
    export made when the export starts (``product_stock_columns``)."""

    header: str
    location_id: int


AnyColumn = Column | Computed | LocationStock
LOCATION_HEADER = "stock@{code}"  # "@": no other header and no SKU-rule code can clash
_NO_LEVELS: dict[int, int] = {}  # never written to


@dataclass(frozen=True)
class Dataset:
    name: str  # URL and file name part
    title: str  # sheet title
    model: type
    key: str  # a unique, indexed, immutable-enough column: the keyset
    date_field: str  # what since/until filter
    date_label: str  # that field as the docs name it
    columns: tuple[Column | Computed, ...]
    permission: str
    # The reverse relation to ``StockLevel``: the declared columns are followed by one stock
    # column per location, resolved when an export starts. Empty: no such columns.
    location_levels: str = ""

    def columns_now(self) -> tuple[AnyColumn, ...]:
        """The columns of an export starting now (one query for the locations, if any)."""
        if not self.location_levels:
            return self.columns
        return (*self.columns, *product_stock_columns())

    @property
    def documented_header(self) -> list[str]:
        """The header as the docs give it (the per-location columns as a pattern)."""
        names = [column.header for column in self.columns]
        if self.location_levels:
            names.append(LOCATION_HEADER.format(code="<location code>") + " per location")
        return names


def product_stock_columns() -> tuple[LocationStock, ...]:
    """One stock column per location, ``stock@<code>``, in code order: every active location
    and every deactivated one still holding stock (a deactivated location only loses stock;
    once empty it drops out). The code, not the name: it is unique and fixed once created.
    Read when an export starts: a location created during it is not in the file, though its
    stock still counts in ``stock``."""
    holding = StockLevel.objects.filter(location=OuterRef("pk"), quantity__gt=0)
    rows = (
        Location.objects.filter(Q(active=True) | Q(Exists(holding)))
        .order_by("code")
        .values_list("pk", "code")
    )
    return tuple(LocationStock(LOCATION_HEADER.format(code=code), pk) for pk, code in rows)


def _username(value: Any) -> Any:
    return value or ""


PRODUCTS = Dataset(
    name="products",
    title="products",
    model=Product,
    key="sku",
    date_field="updated_at",
    date_label="updated",
    columns=(
        Column("sku", "sku"),
        Column("name", "name"),
        Column("price", "price"),
        Column("stock", "stock"),  # the total; per location at the end (location_levels)
        Column("low_stock_threshold", "low_stock_threshold"),
        Computed("stock_value", lambda row: row["price"] * row["stock"], ("price", "stock")),
        Column("created_at (UTC)", "created_at"),
        Column("updated_at (UTC)", "updated_at"),
    ),
    permission="app.view_product",
    location_levels="stock_levels",
)
PRICE_HISTORY = Dataset(
    name="price-history",
    title="price history",
    model=PriceHistory,
    key="id",
    date_field="changed_at",
    date_label="changed",
    columns=(
        Column("id", "id"),
        Column("sku", "sku"),
        Column("name", "name"),
        Column("old_price", "old_price"),
        Column("new_price", "new_price"),
        Column("changed_at (UTC)", "changed_at"),
        Column("changed_by", "changed_by__username", _username),
        Column("source", "source"),
    ),
    permission="app.view_pricehistory",
)
STOCK_MOVEMENTS = Dataset(
    name="stock-movements",
    title="stock ledger",
    model=StockMovement,
    key="id",
    date_field="created_at",
    date_label="moved",
    columns=(
        Column("id", "id"),
        Column("sku", "sku"),
        Column("delta", "delta"),
        Column("stock_after", "stock_after"),
        Column("reason", "reason"),
        Column("created_at (UTC)", "created_at"),
        Column("changed_by", "changed_by__username", _username),
        Column("source", "source"),
    ),
    permission="app.view_stockmovement",
)
ALERTS = Dataset(
    name="alerts",
    title="alerts",
    model=StockAlert,
    key="id",
    date_field="opened_at",
    date_label="opened",
    columns=(
        Column("id", "id"),
        Column("sku", "sku"),
        Column("name", "name"),
        Column("stock", "stock"),
        Column("threshold", "threshold"),
        Column("opened_at (UTC)", "opened_at"),
        Column("resolved_at (UTC)", "resolved_at"),
        Column("delivery_status", "delivery_status"),
        Column("attempts", "attempts"),
        Column("sent_at (UTC)", "sent_at"),
    ),
    permission="app.view_stockalert",
)
DATASETS: dict[str, Dataset] = {
    d.name: d for d in (PRODUCTS, PRICE_HISTORY, STOCK_MOVEMENTS, ALERTS)
}


@dataclass(frozen=True)
class ExportFilters:
    sku_prefix: str = ""
    since: datetime | None = None  # inclusive
    until: datetime | None = None  # exclusive


def parse_bound(param: str, text: str | None, *, end: bool) -> datetime | None:
    """A date range bound from ``YYYY-MM-DD`` or an ISO 8601 date-time (no offset: UTC).

    A bare date means the start of that day (UTC) for ``since``; for ``until`` (``end``) it
    means through the end of that day, i.e. before the next day's midnight.
    """
    if text is None or text == "":
        return None
    text = text.strip()
    try:
        if len(text) == 10:
            day = date.fromisoformat(text)
            if end:
                day += timedelta(days=1)
            return datetime.combine(day, time.min, tzinfo=UTC)
        # An unencoded "+01:00" in a query string arrives as " 01:00".
        moment = datetime.fromisoformat(_PLUS_AS_SPACE.sub(r"\1+\2", text))
    except (ValueError, OverflowError):
        raise InvalidExportParameter(
            param,
            f"{param}: {text[:40]!r} is not a date (YYYY-MM-DD) or an ISO 8601 date-time.",
        ) from None
    if timezone.is_naive(moment):
        moment = moment.replace(tzinfo=UTC)
    return moment


def parse_filters(
    sku_prefix: str | None = None, since: str | None = None, until: str | None = None
) -> ExportFilters:
    """Validated filters; ``InvalidExportParameter`` names the first bad parameter."""
    prefix = sku_prefix or ""
    if prefix:
        problem = sku_ref_problem(prefix)
        if problem:
            raise InvalidExportParameter("sku_prefix", f"sku_prefix: {problem}.")
    start = parse_bound("since", since, end=False)
    stop = parse_bound("until", until, end=True)
    if start is not None and stop is not None and start >= stop:
        raise InvalidExportParameter("until", "until: must be later than since.")
    return ExportFilters(sku_prefix=prefix, since=start, until=stop)


def filtered(dataset: Dataset, filters: ExportFilters) -> QuerySet:
    rows = dataset.model._default_manager.all()
    if filters.sku_prefix:
        rows = rows.filter(sku__startswith=filters.sku_prefix)
    if filters.since is not None:
        rows = rows.filter(**{f"{dataset.date_field}__gte": filters.since})
    if filters.until is not None:
        rows = rows.filter(**{f"{dataset.date_field}__lt": filters.until})
    return rows


def iter_rows(
    dataset: Dataset,
    filters: ExportFilters,
    chunk_rows: int | None = None,
    columns: Sequence[AnyColumn] | None = None,
) -> Iterator[tuple]:
    """Every row of the filtered dataset in key order, ``chunk_rows`` (default
    ``CHUNK_ROWS``) per query. ``columns``: those of ``dataset.columns_now()`` (read when
    the first row is asked for if not given)."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    if columns is None:
        columns = dataset.columns_now()
    fields: list[str] = []
    for column in columns:
        if isinstance(column, Computed):
            needed: tuple[str, ...] = column.needs
        elif isinstance(column, Column):
            needed = (column.field,)
        else:
            needed = ()
        for name in needed:
            if name not in fields:
                fields.append(name)
    if dataset.key not in fields:
        fields.append(dataset.key)
    index = {name: i for i, name in enumerate(fields)}
    per_location = any(isinstance(c, LocationStock) for c in columns)
    plain = [isinstance(c, Column) and c.convert is None for c in columns]
    direct = all(plain) and [c.field for c in columns] == fields
    key_index = index[dataset.key]
    base = filtered(dataset, filters).order_by(dataset.key)
    last = None
    while True:
        page = base if last is None else base.filter(**{f"{dataset.key}__gt": last})
        if per_location:
            chunk, levels = _with_levels(dataset, page, fields, chunk_rows)
            for row in chunk:
                yield _cells(columns, row, index, levels[row[key_index]])
        else:
            chunk = list(page.values_list(*fields)[:chunk_rows])
            for row in chunk:
                yield row if direct else _cells(columns, row, index)
        if len(chunk) < chunk_rows:
            return
        last = chunk[-1][key_index]


def _with_levels(
    dataset: Dataset, page: QuerySet, fields: list[str], chunk_rows: int
) -> tuple[list[tuple], dict[Any, dict[int, int]]]:
    """The first ``chunk_rows`` rows of ``page`` and, by key, each one's quantity per
    location id: one statement (the chunk's ids as a subquery, its levels joined), so a
    row's ``stock`` and its levels come from one snapshot and sum up even while stock
    moves. At most ``chunk_rows`` x locations records."""
    relation = dataset.location_levels
    width = len(fields)
    key_index = fields.index(dataset.key)
    ids = page.values("pk")[:chunk_rows]
    records = (
        dataset.model._default_manager.filter(pk__in=ids)
        .order_by(dataset.key, f"{relation}__location")
        .values_list(*fields, f"{relation}__location", f"{relation}__quantity")
    )
    rows: list[tuple] = []
    levels: dict[Any, dict[int, int]] = {}
    for record in records:
        row = record[:width]
        held = levels.get(row[key_index])
        if held is None:
            rows.append(row)
            held = levels[row[key_index]] = {}
        if record[width] is not None:  # None: a product without any level (LEFT JOIN)
            held[record[width]] = record[width + 1]
    return rows, levels


def _cells(
    columns: Sequence[AnyColumn],
    row: tuple,
    index: dict[str, int],
    levels: dict[int, int] = _NO_LEVELS,
) -> tuple:
    named = None
    cells = []
    for column in columns:
        if isinstance(column, Computed):
            if named is None:
                named = {name: row[i] for name, i in index.items()}
            cells.append(column.compute(named))
        elif isinstance(column, LocationStock):
            cells.append(levels.get(column.location_id, 0))
        else:
            value = row[index[column.field]]
            cells.append(column.convert(value) if column.convert else value)
    return tuple(cells)


@dataclass(frozen=True)
class ExportFile:
    filename: str
    content_type: str
    chunks: Iterator[bytes]

    def response(self) -> StreamingHttpResponse:
        """A streamed download (``Content-Disposition: attachment``), never cached."""
        response = StreamingHttpResponse(self.chunks, content_type=self.content_type)
        response["Content-Disposition"] = f'attachment; filename="{self.filename}"'
        response["Cache-Control"] = "no-store"
        response["X-Content-Type-Options"] = "nosniff"
        return response


def export_file(
    dataset: Dataset, fmt: str, filters: ExportFilters, *, today: date | None = None
) -> ExportFile:
    """The export of ``dataset`` as ``fmt`` (csv or xlsx): the file is produced while it is
    sent. File name: ``stockpipe-<dataset>-<UTC date>.<fmt>``. The columns (locations
    included) are read now, before the response starts."""
    if fmt not in FORMATS:
        raise InvalidExportParameter("format", f"format: must be one of {', '.join(FORMATS)}.")
    day = today or timezone.now().astimezone(UTC).date()
    filename = f"stockpipe-{dataset.name}-{day.isoformat()}.{fmt}"
    columns = dataset.columns_now()
    header = [column.header for column in columns]
    rows = iter_rows(dataset, filters, columns=columns)
    if fmt == "csv":
        return ExportFile(filename, CSV_CONTENT_TYPE, csv_chunks(header, rows))
    return ExportFile(filename, XLSX_CONTENT_TYPE, xlsx_chunks(dataset.title, header, rows))
