"""A change made in a change batch keeps the change context it was made in (who, why,
from where, at which location): its effects run when the batch ends, in that context."""

from __future__ import annotations

from contextlib import nullcontext
from decimal import Decimal

import pytest
from django.db import transaction

from app.core.context import change_context
from app.models import PriceHistory, Product, StockMovement
from app.tracking.batch import collecting_changes
from tests.factories import UserFactory


def writes(batched: bool, user) -> tuple[list[tuple], list[tuple]]:
    with (
        transaction.atomic(),
        change_context(source="outer", reason="outer"),
        collecting_changes() if batched else nullcontext(),
    ):
        product = Product.objects.create(sku="C-1", name="Ctx", price=Decimal("1.00"), stock=5)
        with change_context(user=user, source="scanner", reason="recount"):
            product.stock = 3
            product.price = Decimal("2.00")
            product.save()
        product.stock = 4  # the outer context again
        product.save()
    ledger = StockMovement.objects.filter(product__sku="C-1").order_by("pk")
    history = PriceHistory.objects.filter(product__sku="C-1").order_by("pk")
    return (
        [(m.delta, m.stock_after, m.source, m.reason, m.changed_by_id) for m in ledger],
        [(h.old_price, h.new_price, h.source, h.changed_by_id) for h in history],
    )


@pytest.mark.django_db(transaction=True)
def test_a_change_in_a_batch_keeps_its_own_context():
    user = UserFactory()
    plain = writes(False, user)
    assert plain == (
        [
            (5, 5, "outer", "outer", None),
            (-2, 3, "scanner", "recount", user.pk),
            (1, 4, "outer", "outer", None),
        ],
        [(Decimal("1.00"), Decimal("2.00"), "scanner", user.pk)],
    )
    Product.objects.all().delete()
    StockMovement.objects.all().delete()
    PriceHistory.objects.all().delete()
    assert writes(True, user) == plain
