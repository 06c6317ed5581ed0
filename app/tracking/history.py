"""The history and ledger effect: the only module that writes ``PriceHistory`` and
``StockMovement`` rows.

One ``INSERT ... SELECT`` per table and change set, whatever wrote the change: Python rows
travel as one JSON parameter, the SQL route's staged rows are read where they are.

* one ``PriceHistory`` row per real price change of an existing product (old -> new),
* one ``StockMovement`` row per stock change, a new product's stock included (reason
  "initial stock" unless the change context gives one), so stock equals the ledger's sum.
"""

from __future__ import annotations

from datetime import datetime

from django.db import connections
from django.utils import timezone

from ..core.context import current_change_context
from ..models import PriceHistory, StockMovement
from .changes import PRICE_CHANGED, STOCK_CHANGED, ChangeSet
from .levels import location_of

PRICE_COLUMNS = (
    "product_id", "sku", "name", "old_price", "new_price", "changed_at", "changed_by_id",
    "source",
)  # fmt: skip
MOVEMENT_COLUMNS = (
    "product_id", "location_id", "sku", "delta", "stock_after", "reason", "idempotency_key", "created_at",
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
                f"c.pk, {typed('bigint')}, c.sku, c.stock - c.old_stock, c.stock, {reason}, "
                f"{typed('text')}, {who}"
            )
            head = (
                location_of(changes),
                ctx.reason or INITIAL_STOCK,
                ctx.reason,
                ctx.idempotency_key,
            )
            for sql, params in changes.select(
                columns, STOCK_CHANGED, (*head, at, ctx.user_id, ctx.source)
            ):
                cursor.execute(f"{into} {sql}", params)


def record_transfer(
    *,
    product_id: int,
    sku: str,
    source_id: int,
    target_id: int,
    quantity: int,
    stock: int,
    reason: str,
    using: str = "default",
) -> list[StockMovement]:
    """The two ledger rows of a transfer (the total ``stock`` does not change, so no change
    set describes it): ``-quantity`` at the source, ``+quantity`` at the target, attributed
    like any change; the source row carries the context's idempotency key."""
    ctx = current_change_context()
    common = {
        "product_id": product_id,
        "sku": sku,
        "stock_after": stock,
        "reason": reason,
        "created_at": timezone.now(),
        "changed_by_id": ctx.user_id,
        "source": ctx.source,
    }
    rows = [
        StockMovement(
            location_id=source_id, delta=-quantity, idempotency_key=ctx.idempotency_key, **common
        ),
        StockMovement(location_id=target_id, delta=quantity, **common),
    ]
    return StockMovement.objects.using(using).bulk_create(rows)


def record_staged_transfer(
    stage: str, source_id: int, target_id: int, *, reason: str, at: datetime, using: str
) -> None:
    """The ledger rows of a set-based transfer: for each row ``(pid, sku, n, stock)`` of the
    temporary table ``stage``, ``-n`` at the source and ``+n`` at the target (the total
    ``stock`` unchanged), attributed like any change."""
    connection = connections[using]
    ctx = current_change_context()
    pg = connection.vendor == "postgresql"

    def typed(sql_type: str) -> str:
        return f"%s::{sql_type}" if pg else "%s"

    into = _into(
        connection,
        StockMovement,
        ("product_id", "location_id", "sku", "delta", "stock_after", "reason", "created_at",
         "changed_by_id", "source"),
    )  # fmt: skip
    when = connection.ops.adapt_datetimefield_value(at)
    who = f"{typed('text')}, {typed('timestamptz')}, {typed('integer')}, {typed('text')}"
    # One statement, rows in the order of the per-product service: each product's source
    # row, then its target row.
    sides = " UNION ALL ".join(
        f"SELECT s.ord, {side} AS side, s.pid, {typed('bigint')} AS loc, s.sku, {sign}s.n AS d, "
        f"s.stock FROM {stage} s"
        for side, sign in ((0, "-"), (1, ""))
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"{into} SELECT m.pid, m.loc, m.sku, m.d, m.stock, {who} FROM ({sides}) m "
            "ORDER BY m.ord, m.side",
            [reason, when, ctx.user_id, ctx.source, source_id, target_id],
        )


def _into(connection, model, names) -> str:
    qn = connection.ops.quote_name
    meta = model._meta
    columns = ", ".join(qn(meta.get_field(n).column) for n in names)
    return f"INSERT INTO {qn(meta.db_table)} ({columns})"


CARRIED_FORWARD = "carried forward"
RETENTION_SOURCE = "retention"
_BATCH = 5000


def carry_forward_ledger(
    product_ids: list[int], before: datetime, *, using: str = "default", dry_run: bool = False
) -> int:
    """Fold each product's ledger rows older than ``before`` into one ``carried forward`` row
    per location (their summed delta, the last row's ``stock_after`` and time), so stock
    still equals the ledger's sum, per product and per location, once the old rows are
    gone. Returns the number of rows removed.

    Run inside a transaction: the old rows are locked first, so a second pruner running at
    the same time finds them gone, or finds only the carried-forward rows, which it leaves.
    """
    rows = StockMovement.objects.using(using).filter(
        product_id__in=product_ids, created_at__lt=before
    )
    if dry_run:
        return rows.count()
    groups: dict[tuple[int, int], list[tuple]] = {}
    locked = (
        rows.select_for_update()
        .order_by("product_id", "created_at", "id")
        .values_list(
            "id", "product_id", "location_id", "sku", "delta", "stock_after", "created_at", "reason"
        )
    )
    for row in locked:
        groups.setdefault((row[1], row[2]), []).append(row)
    folded, ids = [], []
    for (product_id, location_id), group in groups.items():
        if len(group) == 1 and group[0][7] == CARRIED_FORWARD:
            continue  # folded already (by a pruner that committed while this one waited)
        *_, sku, _, stock_after, created_at, _ = group[-1]
        ids.extend(row[0] for row in group)
        folded.append(
            StockMovement(
                product_id=product_id,
                location_id=location_id,
                sku=sku,
                delta=sum(row[4] for row in group),
                stock_after=stock_after,
                reason=CARRIED_FORWARD,
                created_at=created_at,
                source=RETENTION_SOURCE,
            )
        )
    for start in range(0, len(ids), _BATCH):
        StockMovement.objects.using(using).filter(pk__in=ids[start : start + _BATCH]).delete()
    StockMovement.objects.using(using).bulk_create(folded, batch_size=1000)
    return len(ids)


def prune_price_history(
    before: datetime,
    *,
    keep_from: dict[int, datetime],
    using: str = "default",
    dry_run: bool = False,
) -> int:
    """Delete price history older than ``before`` in batches, except, for each product in
    ``keep_from``, anything at or after that product's own date (its Omnibus window).
    Returns the number of rows removed (or, with ``dry_run``, that would be)."""
    removed, after = 0, 0
    while True:
        batch = list(
            PriceHistory.objects.using(using)
            .filter(changed_at__lt=before, id__gt=after)
            .order_by("id")
            .values_list("id", "product_id", "changed_at")[:_BATCH]
        )
        if not batch:
            return removed
        after = batch[-1][0]
        doomed = [
            pk
            for pk, product_id, changed_at in batch
            if product_id not in keep_from or changed_at < keep_from[product_id]
        ]
        if doomed and not dry_run:
            PriceHistory.objects.using(using).filter(pk__in=doomed).delete()
        removed += len(doomed)
