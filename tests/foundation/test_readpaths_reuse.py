"""``benchmarks/readpaths.py --reuse`` keeps a database of the same size, which may predate
the load's reservation counters (every ``Product.reserved`` at 0 beside live holds): the
product page, which reads no holds of such a product, would then measure less work than it
does. The counters are set again on reuse (``restore_counters``)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from app.models import Product
from tests.factories import ProductFactory

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.mark.postgres  # the benchmark's database is PostgreSQL (UPDATE ... FROM with aliases)
def test_a_reused_database_gets_the_counters_of_its_holds(db, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import readpaths

    held, free = ProductFactory(stock=5), ProductFactory(stock=5)
    with connection.cursor() as cursor:  # as the load wrote holds before it set counters
        cursor.execute(
            "INSERT INTO app_reservation (source, product_id, sku, location_id, quantity, "
            "reference, status, expires_at, created_at) "
            "VALUES ('bench', %s, %s, NULL, 2, '', 'active', %s, %s)",
            [held.pk, held.sku, timezone.now() + timedelta(days=1), timezone.now()],
        )
    assert Product.objects.get(pk=held.pk).reserved == 0

    readpaths.restore_counters()

    assert Product.objects.get(pk=held.pk).reserved == 2
    assert Product.objects.get(pk=free.pk).reserved == 0
    sys.modules.pop("readpaths", None)
