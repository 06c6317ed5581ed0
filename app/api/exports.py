"""Exports: products, price history, stock ledger and alerts as streamed CSV or XLSX.

``GET /api/exports/<dataset>?format=csv|xlsx&sku_prefix=&since=&until=``. Each needs the
dataset's view permission (``app.view_product``, ``app.view_pricehistory``,
``app.view_stockmovement``, ``app.view_stockalert``): an export is a bulk copy of the table.
The file is produced while it is sent (``app.selectors.exports``), in constant memory.
"""

from __future__ import annotations

from typing import Annotated, Literal

from django.http import HttpRequest
from ninja import Router
from ninja.errors import ValidationError
from pydantic import Field, StringConstraints

from ..core.spreadsheet import CSV_CONTENT_TYPE, XLSX_CONTENT_TYPE
from ..selectors import exports
from .auth import AUTH, require_perm
from .errors import responses
from .schemas import Sku

router = Router(tags=["exports"], auth=AUTH)

Format = Annotated[Literal["csv", "xlsx"], Field(description="File format")]
Bound = Annotated[
    str,
    StringConstraints(max_length=40),
    Field(
        description=(
            "YYYY-MM-DD or an ISO 8601 date-time (without offset: UTC). `since` is "
            "inclusive; `until` is exclusive, and a bare date includes that whole day."
        )
    ),
]


def _add(dataset: exports.Dataset) -> None:
    content = {
        CSV_CONTENT_TYPE.split(";")[0]: {"schema": {"type": "string"}},
        XLSX_CONTENT_TYPE: {"schema": {"type": "string", "format": "binary"}},
    }
    description = (
        f"The {dataset.title} as a streamed file (`Content-Disposition: attachment; "
        f'filename="stockpipe-{dataset.name}-<UTC date>.<format>"`). Columns: '
        f"{', '.join(dataset.documented_header)}. `since`/`until` filter on the "
        f"{dataset.date_label} time. Text cells beginning with = + - @, tab or CR get a leading apostrophe "
        "(formula injection); numbers stay numbers."
    )

    def export(
        request: HttpRequest,
        format: Format = "csv",
        sku_prefix: Annotated[Sku, Field(description="Only SKUs starting with this")] = None,
        since: Bound = None,
        until: Bound = None,
    ):
        require_perm(request, dataset.permission)
        try:
            filters = exports.parse_filters(sku_prefix, since, until)
        except exports.InvalidExportParameter as exc:
            raise ValidationError([{"loc": ["query", exc.param], "msg": exc.message}]) from None
        return exports.export_file(dataset, format, filters).response()

    export.__name__ = f"export_{dataset.name.replace('-', '_')}"
    router.get(
        f"/{dataset.name}",
        response=responses(401, 403, 422),
        summary=f"Export {dataset.title}",
        description=description,
        openapi_extra={
            "responses": {"200": {"description": "The file, streamed", "content": content}}
        },
    )(export)


for _dataset in exports.DATASETS.values():
    _add(_dataset)
