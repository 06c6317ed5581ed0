"""``keyset_chunks``: the one keyset loop of the exports and the table-walking commands."""

from __future__ import annotations

from decimal import Decimal
from itertools import islice

import pytest

from app.core.pagination import keyset_chunks
from app.models import Product

pytestmark = pytest.mark.django_db


@pytest.fixture
def products():
    # Names run against the SKUs, so "name order" and "sku order" differ.
    Product.objects.bulk_create(
        [Product(sku=f"S-{i}", name=f"N-{9 - i}", price=Decimal(1), stock=i) for i in range(7)]
    )


def test_primary_key_is_read_first_when_not_asked_for(products, django_assert_num_queries):
    pks = list(Product.objects.order_by("pk").values_list("pk", flat=True))
    with django_assert_num_queries(3):  # 3 + 3 + 1 rows
        chunks = list(keyset_chunks(Product.objects, "sku", size=3))
    assert [len(chunk) for chunk in chunks] == [3, 3, 1]
    assert [row for chunk in chunks for row in chunk] == [
        (pk, f"S-{i}") for i, pk in enumerate(pks)
    ]


def test_a_key_among_the_fields_keeps_their_order_and_resumes_after_it(products):
    # The key is the second value: the next query must start after row[1], not row[0].
    # (At most 5 chunks: resuming from the wrong value would loop for ever.)
    chunks = list(islice(keyset_chunks(Product.objects, "name", "sku", size=2, key="sku"), 5))
    assert [row for chunk in chunks for row in chunk] == [
        (f"N-{9 - i}", f"S-{i}") for i in range(7)
    ]


def test_an_exact_multiple_ends_with_one_empty_query(products, django_assert_num_queries):
    with django_assert_num_queries(2):  # 7 rows, then an empty page: no empty chunk yielded
        chunks = list(keyset_chunks(Product.objects, "sku", size=7))
    assert [len(chunk) for chunk in chunks] == [7]
