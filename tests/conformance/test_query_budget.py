"""Issue 11: a save() with a price change costs at most one query more than plain Django's
save() of the same change: the history row. (The savepoint around it is not a query on
the data; both are left out of the count.)"""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from app.models import Product
from tests.conformance.plainapp.models import PlainProduct


def data_statements(capture: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in capture.captured_queries if "SAVEPOINT" not in q["sql"].upper()]


@pytest.mark.django_db
def test_a_price_change_costs_plain_djangos_update_plus_the_history_row():
    fields = {"sku": "Q-1", "name": "Q", "price": Decimal("1.00"), "stock": 10}
    product = Product.objects.get(pk=Product.objects.create(**fields).pk)
    plain = PlainProduct.objects.get(pk=PlainProduct.objects.create(**fields).pk)

    with CaptureQueriesContext(connection) as ours:
        product.price = Decimal("2.00")
        product.save()
    with CaptureQueriesContext(connection) as django:
        plain.price = Decimal("2.00")
        plain.save()

    statements = data_statements(ours)
    assert len(statements) <= len(data_statements(django)) + 1, statements
    assert statements[0].startswith("UPDATE")
    assert "pricehistory" in statements[-1]
