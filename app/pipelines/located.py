"""``set_stock``/``adjust_stock`` at a named location: the map becomes deltas at it.

The products are locked (primary-key order, as by every writer), their levels at the
location read, and each value turned into the delta of the product's total: ``adjust_stock``
adds its delta there; ``set_stock`` sets the location's quantity (the total moves by the
difference). The deltas then run as an ``adjust_stock`` step inside
``change_context(location_id=...)``, on either route, so the levels effect moves that
location and the ledger rows name it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.db.models import Sum

from ..core.context import change_context
from ..models import Location, Product, StockLevel
from .writer import chunked


def run_at_location(
    unit, code: str, values: dict[str, int], *, key: str, absolute: bool, then: Any
) -> None:
    """Run ``then(deltas)`` (an ``adjust_stock`` run) at location ``code``."""
    location = Location.objects.using(unit.using).filter(code=code).first()
    if location is None:
        raise unit.failure([(("location",), f"unknown location {code!r}")])
    deltas: dict[str, int] = {}
    bad = []
    for chunk in chunked(values.items()):
        found = dict(
            Product.objects.using(unit.using)
            .select_for_update()
            .filter(sku__in=[sku for sku, _ in chunk])
            .order_by("pk")
            .values_list("sku", "pk")
        )
        missing = [sku for sku, _ in chunk if sku not in found]
        if missing:
            raise unit.failure([((key, sku), f"unknown SKU {sku!r}") for sku in missing])
        held = dict(
            StockLevel.objects.using(unit.using)
            .filter(product_id__in=found.values(), location_id=location.pk)
            .values_list("product_id", "quantity")
        )
        for sku, value in chunk:
            at = held.get(found[sku], 0)
            delta = value - at if absolute else value
            if at + delta < 0:
                bad.append(
                    ((key, sku), f"stock of {sku} at {code} would go negative: {at} {delta:+d}")
                )
            elif delta > 0 and not location.active:
                bad.append((("location",), f"location {code!r} is deactivated"))
            deltas[sku] = delta
    if bad:
        raise unit.failure(bad)
    with change_context(location_id=location.pk):
        then(deltas)


def check_totals(
    unit,
    values: dict[str, int],
    *,
    key: str,
    absolute: bool,
    product_ids: Sequence[int] | None = None,
    new_totals: Callable[[list[int]], Iterable[tuple[int, str, int]]] | None = None,
) -> None:
    """A map step without a location changes totals at the default location: fail the
    step, naming the SKU, where the new total would be below what the product's other
    locations hold (the default location's level would go negative). Read in one query
    over the levels held elsewhere (normally few), so a large map costs nothing more;
    ``product_ids`` (a chunk's products, from callers checking chunk by chunk) narrows it.
    ``new_totals(pks)``: ``(pk, sku, new total)`` of those products, for a caller that
    knows them without writing first (``app.pipelines.folded``)."""
    from ..tracking.levels import default_location_id

    if not values:
        return
    default = default_location_id(unit.using)
    levels = StockLevel.objects.using(unit.using).filter(quantity__gt=0)
    if product_ids is not None:
        levels = levels.filter(product_id__in=product_ids)
    # The other locations as a subquery: the location index then finds the (few) levels
    # held elsewhere, where ``location <> default`` scanned every level.
    others = Location.objects.using(unit.using).exclude(pk=default).values("pk")
    elsewhere = dict(
        levels.filter(location_id__in=others).values_list("product_id").annotate(n=Sum("quantity"))
    )
    if not elsewhere:
        return
    bad = []
    for chunk in chunked(list(elsewhere)):
        if new_totals is not None:
            found = new_totals(chunk)
        else:
            found = [
                (pk, sku, values[sku] if absolute else stock + values[sku])
                for pk, sku, stock in Product.objects.using(unit.using)
                .filter(pk__in=chunk)
                .values_list("pk", "sku", "stock")
                if sku in values
            ]
        for pk, sku, new in found:
            if 0 <= new < elsewhere[pk]:
                bad.append(
                    (
                        (key, sku),
                        f"stock of {sku} would be {new}, below the {elsewhere[pk]} units held "
                        "at locations other than the default one",
                    )
                )
    if bad:
        raise unit.failure(bad)
