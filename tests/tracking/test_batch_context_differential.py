"""Differential: the attribution of batched changes (who, why, from where, at which
location) is the attribution without a batch, for generated sequences of ORM operations,
each inside a change context drawn at random (nested in the one before, or not), with
savepoints kept or rolled back.

Each sequence runs twice from an empty database, in one committed transaction: once inside
``collecting_changes()``, once without (``test_batch_savepoints``). Compared: each
operation's result, and per product the ledger rows (location, delta, reason, source, user,
idempotency key) and price history rows (old, new, source, user) in write order, and
the stock levels. ``app.tracking.batch`` keeps the context a change was made in
with it (b6a01f7); before, a batch's effects took the context open when it ended.
"""

from __future__ import annotations

import re
from contextlib import ExitStack, nullcontext
from typing import Any

import pytest
from django.db import IntegrityError, transaction
from hypothesis import assume, event, given, note
from hypothesis import strategies as st

from app.core.context import change_context
from app.models import Location, PriceHistory, Product, StockLevel, StockMovement
from app.tracking.batch import collecting_changes
from app.utils.utils import process_pipeline
from tests.conformance.plainapp.models import ProductProxy
from tests.conformance.test_differential import Side, operations
from tests.conftest import differential_settings
from tests.factories import UserFactory
from tests.tracking.test_batch_delete import taken
from tests.tracking.test_batch_savepoints import perform

EXAMPLES = 150
MAX_OPS = 10

# (nested in the previous context?, user?, source, reason, location index or None)
contexts = st.tuples(
    st.booleans(),
    st.booleans(),
    st.sampled_from([None, "api", "import:x"]),
    st.sampled_from([None, "", "recount", "damaged"]),
    st.sampled_from([None, 0, 1]),
)

# Pipeline runs among the operations: their chunks' effects run at each chunk's end even
# inside the batch (``running_at_end``); some fail (stock below zero), some are previews.
pipelines = st.tuples(
    st.just("pipeline"),
    st.sampled_from(
        [
            {"steps": [{"op": "adjust_stock", "deltas": {"A-1": -2, "B-2": 3}}]},
            {"steps": [{"op": "set_prices", "prices": {"B-2": "4.50"}}]},
            {
                "steps": [
                    {
                        "op": "upsert_products",
                        "rows": [{"sku": "C-3", "name": "Up", "price": "2.00", "stock": 4}],
                    }
                ]
            },
            {"dry_run": True, "steps": [{"op": "set_stock", "stock": {"A-1": 9}}]},
            {
                "steps": [
                    {"op": "set_stock", "stock": {"A-1": 7}},
                    {"op": "adjust_stock", "deltas": {"C-3": -50}},
                ]
            },
        ]
    ),
)

# A quarter of the operations a run (``operations | pipelines`` would draw one in ~30).
operations_or_runs = st.integers(0, 3).flatmap(lambda i: pipelines if i == 0 else operations)


def attribution() -> dict[str, Any]:
    ledger: dict[str, list] = {}
    for row in StockMovement.objects.order_by("pk").values_list(
        "sku", "location__code", "delta", "reason", "source", "changed_by_id", "idempotency_key"
    ):
        ledger.setdefault(row[0], []).append(tuple(_run_id(v) for v in row[1:]))
    history: dict[str, list] = {}
    for row in PriceHistory.objects.order_by("pk").values_list(
        "sku", "old_price", "new_price", "source", "changed_by_id"
    ):
        history.setdefault(row[0], []).append(tuple(_run_id(v) for v in row[1:]))
    levels = sorted(StockLevel.objects.values_list("product__sku", "location__code", "quantity"))
    return {"ledger": ledger, "history": history, "levels": levels}


def _run_id(value: Any) -> Any:
    """A pipeline run's source without its id (which differs between the two runs)."""
    return re.sub(r"pipeline:\d+", "pipeline:run", value) if isinstance(value, str) else value


def writes_of(ops: list[tuple], results: list, user, locations: list[int]):
    def writes() -> None:
        side = Side(Product, ProductProxy)
        with ExitStack() as outer:  # the contexts drawn as nested stay open to the end
            for op, (nested, with_user, source, reason, where) in ops:
                context = change_context(
                    user=user if with_user else None,
                    source=source,
                    reason=reason,
                    location_id=None if where is None else locations[where],
                )
                if nested:
                    outer.enter_context(context)
                    results.append(step(side, op))
                else:
                    with context:
                        results.append(step(side, op))

    return writes


def step(side: Side, op: tuple) -> tuple[str | None, Any]:
    try:
        with transaction.atomic():
            if op[0] == "pipeline":
                status = process_pipeline(op[1])["status"]
                event(f"a pipeline run {status}")
                return None, status
            return None, perform(side, op)
    except Exception as exc:  # compared across the two runs
        return type(exc).__name__, None


@pytest.mark.django_db(transaction=True)
@differential_settings(EXAMPLES)
@given(ops=st.lists(st.tuples(operations_or_runs, contexts), min_size=1, max_size=MAX_OPS))
def test_batched_changes_are_attributed_as_without_a_batch(ops):
    note(f"operations: {ops}")
    user = UserFactory()
    locations = [
        Location.objects.get_or_create(code=code, defaults={"name": code})[0].pk
        for code in ("NORTH", "SOUTH")
    ]
    sides = []
    for batched in (False, True):
        results: list = []
        writes = writes_of(ops, results, user, locations)
        try:
            with transaction.atomic(), collecting_changes() if batched else nullcontext():
                writes()
        except IntegrityError:
            # A write the levels effect refuses (a location's level below zero) fails in
            # its savepoint without a batch, the whole batch at its end in one (reported:
            # ``test_batch_running_at_end``, finding 3).
            taken()
            assume(not batched or ("IntegrityError", None) not in sides[0][0])
            raise
        sides.append((results, attribution()))
        taken()
    assert sides[1] == sides[0]
