"""The Omnibus prior price: the lowest price of the 30 days before a price reduction.

Directive 98/6/EC art. 6a (as amended by Directive (EU) 2019/2161) requires every
announcement of a price reduction to show the lowest price applied during the 30 days
before the reduction. This module derives it from ``PriceHistory`` (which records every
price change with its old and new value), so it needs nothing but the history.

The rules, in the order they are applied:

* The price at the moment ``at`` is a *reduction* when the last price change at or before
  ``at`` lowered the price. A last change that raised the price means no reduction.
* A reduction that deepens in steps (100 -> 90 -> 80) is one reduction: the window is
  anchored at its *first* step, so later steps cannot pull the reference price down to an
  earlier reduced price. Consecutive decreases belong to the same reduction while each
  step follows the previous one within 30 days; an increase, or a reduced price that stood
  for 30 days, ends the campaign and the next decrease starts a new one.
* A reduced price that has stood for 30 days is no longer a reduction: it is now the
  lowest price of the last 30 days itself, so no discount can be announced against it.
* The prior price is the lowest price in effect during the 30 days before the anchor.
  The prices in effect during ``(anchor - 30 days, anchor]`` are exactly the *old* prices
  of the changes in that interval (each change's old price is the price in effect up to
  it), so the minimum of those old prices is the answer. For a product younger than 30
  days this is the lowest price since the product was introduced: its first change's old
  price is its launch price, and nothing older exists.
* ``discount_percent`` compares the price at ``at`` with the prior price and is rounded
  *down* to 0.1 %, so the shown discount is never larger than the real one. It is ``None``
  when the price is not below the prior price (a "reduction" back to a price above a
  recent low cannot be announced as a discount).

Each function runs one query for almost every product: the product's history is read newest
first, at or before ``at``, 100 rows a query (keyset), and reading stops 30 days before the
anchor (index ``pricehistory_product_time``). The product page hands ``current_reduction``
the latest rows it read for its chart: then it queries only when the walk goes past them.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from django.db.models import Q
from django.utils import timezone

from ..models import PriceHistory, Product

WINDOW = timedelta(days=30)
CHUNK = 100  # history rows per query; most walks end within the first
PERCENT_STEP = Decimal("0.1")


@dataclass(frozen=True)
class Reduction:
    """A price reduction in effect at some moment, with its legal reference price."""

    price: Decimal  # the reduced price in effect at the moment asked about
    prior_price: Decimal  # lowest price of the 30 days before ``started_at``
    started_at: datetime  # the first step of the reduction: the window's anchor

    @property
    def discount_percent(self) -> Decimal | None:
        if self.prior_price <= 0 or self.price >= self.prior_price:
            return None
        percent = (self.prior_price - self.price) * 100 / self.prior_price
        return percent.quantize(PERCENT_STEP, rounding=ROUND_DOWN)


class Change(Protocol):
    """A price history row as a caller already read it (``newest`` below)."""

    @property
    def changed_at(self) -> datetime: ...
    @property
    def id(self) -> int: ...
    @property
    def old_price(self) -> Decimal: ...
    @property
    def new_price(self) -> Decimal: ...


def current_reduction(
    product: Product | int,
    at: datetime | None = None,
    *,
    newest: Sequence[Change] | None = None,
    whole: bool = False,
) -> Reduction | None:
    """The reduction in effect at ``at`` (default: now), or ``None`` if the price is not one.

    One query; use this when both the prior price and the discount are needed. ``newest``:
    the product's latest changes, newest first (``(changed_at, id)`` descending), already
    read by the caller (the product page reads them for its chart): the walk starts on them
    and queries only beyond the last of them, and not at all when the walk ends within them
    or when ``whole`` says they are the product's whole history.
    """
    at = at or timezone.now()
    product_id = product.pk if isinstance(product, Product) else product
    rows = _changes_back_from(product_id, at, newest, whole)
    price: Decimal | None = None
    anchor: datetime | None = None
    prior: Decimal | None = None
    in_steps = True
    for changed_at, old, new in rows:
        if price is None:
            # The latest change decides whether the price at ``at`` is a reduction at all.
            if new >= old or at - changed_at >= WINDOW:
                return None
            price, anchor, prior = new, changed_at, old
            continue
        if in_steps and new < old and anchor - changed_at < WINDOW:
            # An earlier step of the same reduction: move the anchor back to it.
            anchor, prior = changed_at, old
            continue
        in_steps = False
        if changed_at <= anchor - WINDOW:
            break
        prior = min(prior, old)
    if price is None:
        return None
    return Reduction(price=price, prior_price=prior, started_at=anchor)


def _changes_back_from(
    product_id: int, at: datetime, newest: Sequence[Change] | None = None, whole: bool = False
) -> Iterator[tuple[datetime, Decimal, Decimal]]:
    """The product's changes at or before ``at``, newest first, in keyset pages of ``CHUNK``
    (after the rows of ``newest``, if given; none if ``whole``).

    Plain bounded queries, not ``QuerySet.iterator()``: its server-side cursor costs three
    round trips and, declared WITH HOLD outside a transaction, reads the whole history
    before the first row arrives (tens of thousands of rows for a long-lived product).
    """
    changes = PriceHistory.objects.filter(product_id=product_id, changed_at__lte=at)
    changes = changes.order_by("-changed_at", "-id")
    page = changes
    if newest:
        for row in newest:
            if row.changed_at <= at:
                yield row.changed_at, row.old_price, row.new_price
        if whole:
            return
        last = newest[-1]
        page = changes.filter(
            Q(changed_at__lt=last.changed_at) | Q(changed_at=last.changed_at, id__lt=last.id)
        )
    elif whole:
        return
    while True:
        rows = list(page.values_list("changed_at", "id", "old_price", "new_price")[:CHUNK])
        for changed_at, _, old, new in rows:
            yield changed_at, old, new
        if len(rows) < CHUNK:
            return
        last_at, last_id = rows[-1][:2]
        page = changes.filter(Q(changed_at__lt=last_at) | Q(changed_at=last_at, id__lt=last_id))


def prior_price(product: Product | int, at: datetime | None = None) -> Decimal | None:
    """Lowest price of the 30 days before the reduction in effect at ``at``; ``None`` if none.

    The window is anchored at the start of the reduction, for a stepped reduction at its
    first step (see the module docstring for the full rule).
    """
    reduction = current_reduction(product, at)
    return reduction.prior_price if reduction else None


def discount_percent(product: Product | int, at: datetime | None = None) -> Decimal | None:
    """The reduction at ``at`` in percent of the prior price, rounded down to 0.1.

    ``None`` when the price at ``at`` is not a reduction or not below the prior price.
    """
    reduction = current_reduction(product, at)
    return reduction.discount_percent if reduction else None
