"""The stock-levels effect: ``Product.stock`` is the total of its ``StockLevel`` rows.

Every write path that changes a product's stock hands a change set to the effects; this
one, registered before the ledger, moves the same quantity at one location, in the same
transaction:

* a change set made inside ``change_context(location_id=X)`` (the stock and reservation
  services, pipeline steps naming a location) adds each product's delta at ``X``; the
  level's ``quantity >= 0`` check refuses a move below zero there;
* a change set naming no location (``save()``, ``update()``, the admin, a pipeline step
  without ``location``) adds each product's delta at the **default location**
  (``STOCKPIPE_DEFAULT_LOCATION``, created on first use), set-based: one ``UPDATE ...
  FROM`` joined by product; a product without a level there (a new one) gets the total
  minus its other locations;
* after a change at ``X`` the default location's level is set to the total minus the
  other locations (created at 0 where missing).

So the levels always sum to the total; a total set below the stock held at the other
locations fails on the same check.

The ledger row of the change (``app.tracking.history``) names the same location.
"""

from __future__ import annotations

import contextlib

from django.db import connections

from .. import conf
from ..core import sqlrows
from ..models import Location, StockLevel
from .changes import STOCK_CHANGED, STOCK_CREATED, STOCK_UPDATED, ChangeSet, StagedChanges


def default_location_id(using: str = "default") -> int:
    """The default location's id, creating it (active, named after its code) if missing."""
    code = conf.default_location()
    found = Location.objects.using(using).filter(code=code).values_list("pk", flat=True).first()
    if found is not None:
        return found
    return Location.objects.using(using).get_or_create(code=code, defaults={"name": code})[0].pk


def location_of(changes: ChangeSet) -> int:
    """The location ``changes`` apply to: the one of their change context, else the default."""
    found = getattr(changes, "_resolved_location", None)
    if found is None:
        found = changes.location_id or default_location_id(changes.using)
        changes._resolved_location = found
    return found


def apply_levels(changes: ChangeSet, *, using: str) -> None:
    if not changes.has(STOCK_CHANGED):
        return
    connection = connections[using]
    qn = connection.ops.quote_name
    level = qn(StockLevel._meta.db_table)
    typed = "%s::bigint" if connection.vendor == "postgresql" else "%s"
    target = location_of(changes)
    default = target if changes.location_id is None else default_location_id(using)
    pg = connection.vendor == "postgresql"
    columns = "c.pk AS pk, c.ord AS ord, c.stock AS stock, c.stock - c.old_stock AS delta"
    last = "(array_agg(s.stock ORDER BY s.ord DESC))[1]" if pg else "s.stock"
    # Each product's delta and the stock its last change in the set left (not the row's:
    # in a batch the row may hold later changes already; folded map steps write the row
    # once for several change sets, ``app.pipelines.folded``). SQLite: with one max() in
    # the query, the bare column comes from the row it chose.
    grouped = (
        f"SELECT s.pk, SUM(s.delta) AS delta, {last} AS stock"
        + ("" if pg else ", MAX(s.ord) AS last_ord")
        + " FROM ({sql}) s GROUP BY s.pk"
    )
    one_each = changes.one_per_product(STOCK_CHANGED)
    if one_each:
        # Nothing to group (each product changed once): the rows as they are, kept a
        # table of their own on SQLite (``LIMIT -1``: not flattened into the join).
        grouped = "SELECT s.pk, s.delta, s.stock FROM ({sql}) s" + ("" if pg else " LIMIT -1")
    with connection.cursor() as cursor:
        if target != default:
            # Existing levels first, then new ones: a CHECK constraint is evaluated on the
            # row an INSERT proposes even when ON CONFLICT would turn it into an UPDATE.
            for sql, params in changes.select(
                "c.pk AS pk, c.stock - c.old_stock AS delta", STOCK_CHANGED
            ):
                cursor.execute(
                    f"UPDATE {level} SET quantity = quantity + (SELECT SUM(s.delta) "
                    f"FROM ({sql}) s WHERE s.pk = {level}.product_id) "
                    f"WHERE location_id = {typed} AND product_id IN (SELECT s.pk FROM ({sql}) s)",
                    [*params, target, *params],
                )
                cursor.execute(
                    f"INSERT INTO {level} (product_id, location_id, quantity) "
                    f"SELECT s.pk, {typed}, SUM(s.delta) FROM ({sql}) s WHERE NOT EXISTS "
                    f"(SELECT 1 FROM {level} o WHERE o.product_id = s.pk AND o.location_id = "
                    f"{typed}) GROUP BY s.pk",
                    [target, *params, target],
                )
        if target != default:
            # The default location keeps the total its change left minus the other
            # locations (unchanged when the levels summed to the total; created, at 0, where
            # it had no row).
            for sql, params in changes.select(columns, STOCK_CHANGED, ordered=False):
                cursor.execute(
                    f"INSERT INTO {level} (product_id, location_id, quantity) "
                    f"SELECT x.pk, {typed}, x.stock - COALESCE((SELECT SUM(o.quantity) "
                    f"FROM {level} o WHERE o.product_id = x.pk AND o.location_id <> {typed}), 0) "
                    f"FROM ({grouped.format(sql=sql)}) x WHERE true ON CONFLICT (product_id, "
                    "location_id) DO UPDATE SET quantity = excluded.quantity",
                    [default, default, *params],
                )
            return
        # The change applies to the default location: each product's delta is added to its
        # level there, set-based (one UPDATE joined by primary key); a product without a
        # level there (a new one) gets the stock its last change left minus its other
        # locations.
        # Each product's delta, for the UPDATE (no ordered aggregate: the last stock is for
        # the INSERT of missing levels).
        deltas = "SELECT s.pk, SUM(s.delta) AS delta FROM ({sql}) s GROUP BY s.pk"
        if one_each:
            deltas = "SELECT s.pk, s.delta FROM ({sql}) s" + ("" if pg else " LIMIT -1")
        missing = (
            f"INSERT INTO {level} (product_id, location_id, quantity) "
            f"SELECT x.pk, {typed}, x.stock - COALESCE((SELECT SUM(o.quantity) "
            f"FROM {level} o WHERE o.product_id = x.pk), 0) "
            f"FROM {{x}} WHERE NOT EXISTS "
        )
        # Without a level at the default location: not there (a probe), or not found by the
        # UPDATE ``u`` of the same statement.
        unmatched = missing + "(SELECT 1 FROM u WHERE u.product_id = x.pk)"
        missing += (
            f"(SELECT 1 FROM {level} o WHERE o.product_id = x.pk AND o.location_id = {typed})"
        )
        # When the change set knows how many products it names (the SQL route's), an
        # UPDATE that found a level for each of them leaves none missing: the INSERT,
        # another pass over the change rows, is skipped.
        expected = changes.product_count(STOCK_CHANGED)
        # A staged change set's levels are probed by product (no hash join,
        # ``sqlrows.hash_joins_off``): a chunk of an upsert otherwise hashed every level of
        # the catalogue to change its own (0.6 s of 1.5 s per 50,000-row chunk at 1,000,000
        # products). A few changed rows are probed anyway, without the two statements.
        staged = isinstance(changes, StagedChanges)
        with sqlrows.hash_joins_off(cursor) if staged else contextlib.nullcontext():
            for sql, params in changes.select(columns, STOCK_CHANGED, ordered=False):
                if pg and expected is None:
                    # One statement, the change rows read once: both parts see the levels as
                    # they were before it, and touch different rows (with/without a level).
                    # The products without a level there are those the UPDATE did not find
                    # (one level per product and location): an anti-join against its
                    # RETURNING, not a second probe of the levels (a scan of the whole table
                    # per chunk of an upsert, which grows with the catalogue).
                    cursor.execute(
                        f"WITH x AS MATERIALIZED ({grouped.format(sql=sql)}), u AS (UPDATE {level} "
                        f"SET quantity = {level}.quantity + x.delta FROM x WHERE "
                        f"{level}.product_id = x.pk AND {level}.location_id = {typed} "
                        f"RETURNING {level}.product_id) " + unmatched.format(x="x"),
                        [*params, default, default],
                    )
                    continue
                # Each product's delta (a derived table of its own, probed into the levels by
                # product; the unary plus keeps SQLite off the location's index).
                cursor.execute(
                    f"UPDATE {level} SET quantity = {level}.quantity + x.delta FROM "
                    f"({deltas.format(sql=sql)}) x "
                    f"WHERE {level}.product_id = x.pk AND +{level}.location_id = {typed}",
                    [*params, default],
                )
                if cursor.rowcount == expected:
                    continue
                lacking = [(sql, params)]
                if cursor.rowcount == changes.product_count(STOCK_UPDATED):
                    # A level found for each product that existed before the change (a created
                    # one, new in this transaction, has none): only the created can lack one.
                    # The INSERT reads their rows alone (an upsert's new SKUs), not every row.
                    lacking = changes.select(columns, STOCK_CREATED, ordered=False)
                for rows_sql, rows_params in lacking:
                    cursor.execute(
                        missing.format(x=f"({grouped.format(sql=rows_sql)}) x"),
                        [default, *rows_params, default],
                    )
