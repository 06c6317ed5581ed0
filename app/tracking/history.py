"""The history and ledger effect: the only module that writes ``PriceHistory`` and
``StockMovement`` rows.

One ``INSERT ... SELECT`` per table and change set, whatever wrote the change: Python rows
travel as one JSON parameter, the SQL route's staged rows are read where they are.

* one ``PriceHistory`` row per real price change of an existing product (old -> new),
* one ``StockMovement`` row per stock change, a new product's stock included (reason
  "initial stock" unless the change context gives one), so stock equals the ledger's sum.
"""

from __future__ import annotations

from django.db import connections

from ..core.context import current_change_context
from ..models import PriceHistory, StockMovement
from .changes import PRICE_CHANGED, STOCK_CHANGED, ChangeSet

PRICE_COLUMNS = (
    "product_id", "sku", "name", "old_price", "new_price", "changed_at", "changed_by_id",
    "source",
)  # fmt: skip
MOVEMENT_COLUMNS = (
    "product_id", "sku", "delta", "stock_after", "reason", "idempotency_key", "created_at",
    "changed_by_id", "source",
)  # fmt: skip
INITIAL_STOCK = "initial stock"


def record_history(changes: ChangeSet, *, using: str) -> None:
    prices, stocks = changes.has(PRICE_CHANGED), changes.has(STOCK_CHANGED)
    if not prices and not stocks:
        return
    connection = connections[using]
    ctx = current_change_context()
    at = connection.ops.adapt_datetimefield_value(changes.now)
    pg = connection.vendor == "postgresql"

    def typed(sql_type: str) -> str:  # a bound value in a SELECT list needs a type on PG
        return f"%s::{sql_type}" if pg else "%s"

    who = f"{typed('timestamptz')}, {typed('integer')}, {typed('text')}"
    with connection.cursor() as cursor:
        if prices:
            into = _into(connection, PriceHistory, PRICE_COLUMNS)
            columns = f"c.pk, c.sku, c.name, c.old_price, c.price, {who}"
            for sql, params in changes.select(
                columns, PRICE_CHANGED, (at, ctx.user_id, ctx.source)
            ):
                cursor.execute(f"{into} {sql}", params)
        if stocks:
            into = _into(connection, StockMovement, MOVEMENT_COLUMNS)
            reason = f"CASE WHEN c.kind = 'created' THEN {typed('text')} ELSE {typed('text')} END"
            columns = (
                f"c.pk, c.sku, c.stock - c.old_stock, c.stock, {reason}, {typed('text')}, {who}"
            )
            head = (ctx.reason or INITIAL_STOCK, ctx.reason, ctx.idempotency_key)
            for sql, params in changes.select(
                columns, STOCK_CHANGED, (*head, at, ctx.user_id, ctx.source)
            ):
                cursor.execute(f"{into} {sql}", params)


def _into(connection, model, names) -> str:
    qn = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(qn(meta.get_field(n).column) for n in names)
    return f"INSERT INTO {qn(meta.db_table)} ({columns})"
