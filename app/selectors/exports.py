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
known only when an export starts: ``Dataset.columns_now()`` makes them, as annotations of
the chunk's own query (one statement, one snapshot: the location columns sum to ``stock``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import StreamingHttpResponse
from django.utils import timezone

from ..core.domain import sku_ref_problem
from ..core.pagination import keyset_chunks
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
class Annotation(Column):
    """A column the database computes in each chunk's query (``field`` names the
    annotation): the products' stock per location, made when an export starts."""

    expression: Any = None


LOCATION_HEADER = "stock@{code}"  # "@": no other header and no SKU-rule code can clash


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
    # Columns after the declared ones, made when an export starts (one query), and how the
    # docs name them.
    more_columns: Callable[[], tuple[Annotation, ...]] | None = None
    more_columns_doc: str = ""

    def columns_now(self) -> tuple[Column | Computed, ...]:
        """The columns of an export starting now."""
        if self.more_columns is None:
            return self.columns
        return (*self.columns, *self.more_columns())

    @property
    def documented_header(self) -> list[str]:
        """The header as the docs give it (the columns made at export time as a pattern)."""
        names = [column.header for column in self.columns]
        return [*names, self.more_columns_doc] if self.more_columns_doc else names


def product_stock_columns() -> tuple[Annotation, ...]:
    """One stock column per location, ``stock@<code>``, in code order: every active location
    and every deactivated one still holding stock (a deactivated location only loses stock;
    once empty it drops out). The code, not the name: it is unique and fixed once created.
    Read when an export starts: a location created during it is not in the file, though its
    stock still counts in ``stock``.

    Each is a subquery of the chunk's query (0 where the product has no level there): one
    statement per chunk, so ``stock`` and the levels come from one snapshot and sum up even
    while stock moves; the cost is one index probe per product and location."""
    holding = StockLevel.objects.filter(location=OuterRef("pk"), quantity__gt=0)
    rows = (
        Location.objects.filter(Q(active=True) | Q(Exists(holding)))
        .order_by("code")
        .values_list("pk", "code")
    )
    return tuple(
        Annotation(
            LOCATION_HEADER.format(code=code),
            f"stock_at_location_{pk}",
            expression=Coalesce(
                Subquery(
                    StockLevel.objects.filter(product=OuterRef("pk"), location_id=pk)
                    .order_by()
                    .values("quantity")
                ),
                0,
            ),
        )
        for pk, code in rows
    )


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
        Column("stock", "stock"),  # the total; per location at the end (more_columns)
        Column("low_stock_threshold", "low_stock_threshold"),
        Computed("stock_value", lambda row: row["price"] * row["stock"], ("price", "stock")),
        Column("created_at (UTC)", "created_at"),
        Column("updated_at (UTC)", "updated_at"),
    ),
    permission="app.view_product",
    more_columns=product_stock_columns,
    more_columns_doc=LOCATION_HEADER.format(code="<location code>") + " per location, by code",
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
    columns: Sequence[Column | Computed] | None = None,
) -> Iterator[tuple]:
    """Every row of the filtered dataset in key order, ``chunk_rows`` (default
    ``CHUNK_ROWS``) per query. ``columns``: ``dataset.columns_now()`` unless given (then
    read when the first row is asked for)."""
    chunk_rows = chunk_rows or CHUNK_ROWS
    if columns is None:
        columns = dataset.columns_now()
    fields: list[str] = []
    for column in columns:
        for name in column.needs if isinstance(column, Computed) else (column.field,):
            if name not in fields:
                fields.append(name)
    if dataset.key not in fields:
        fields.append(dataset.key)
    index = {name: i for i, name in enumerate(fields)}
    plain = [isinstance(c, Column) and c.convert is None for c in columns]
    direct = all(plain) and [c.field for c in columns] == fields
    annotations = {c.field: c.expression for c in columns if isinstance(c, Annotation)}
    base = filtered(dataset, filters).annotate(**annotations)
    for chunk in keyset_chunks(base, *fields, size=chunk_rows, key=dataset.key):
        for row in chunk:
            yield row if direct else _cells(columns, row, index)


def _cells(columns: Sequence[Column | Computed], row: tuple, index: dict[str, int]) -> tuple:
    named = None
    cells = []
    for column in columns:
        if isinstance(column, Computed):
            if named is None:
                named = {name: row[i] for name, i in index.items()}
            cells.append(column.compute(named))
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
