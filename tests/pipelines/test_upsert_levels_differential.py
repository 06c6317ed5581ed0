"""The levels effect after an upsert on the SQL route (069c6e9): with the stage's count of
existing products whose stock changes (``STOCK_UPDATED``), SQLite looks for missing
default-location levels among the created products alone when the levels ``UPDATE``
found one for each of them. Against the same upsert without that count (the INSERT of
missing levels over every changed product, as before), over random catalogues: levels
at the default location deleted, other locations holding some, the default location
moved by setting, CSVs with and without a stock column, blank cells, repeated SKUs
and chunks of three rows (several chunks), new SKUs."""

from __future__ import annotations

import random
from decimal import Decimal

import pytest
from django.db import connection, transaction
from django.test import override_settings

from app.models import Location, Product, StockLevel
from app.pipelines import upserts
from app.tracking.changes import EVERY, STOCK_UPDATED, StagedChanges
from app.tracking.levels import default_location_id
from app.utils.utils import process_pipeline

_product_count = StagedChanges.product_count


def _catalogue(rng: random.Random) -> str:
    """Products with random levels, and a CSV upserting some of them and new SKUs."""
    codes = [f"W{i}" for i in range(rng.randint(0, 2))]
    others = [Location.objects.get_or_create(code=code, name=code)[0].pk for code in codes]
    default = default_location_id()
    n = rng.randint(0, 8)
    for i in range(n):
        Product.objects.create(
            sku=f"K-{i}", name=f"n{i}", price=Decimal("1.00"), stock=rng.randint(0, 9)
        )
    for product in Product.objects.all():
        if rng.random() < 0.4:
            StockLevel.objects.filter(product=product, location_id=default).delete()
        for other in others:
            if other != default and rng.random() < 0.4:
                StockLevel.objects.update_or_create(
                    product=product, location_id=other, defaults={"quantity": rng.randint(0, 2)}
                )
    stock = rng.random() < 0.85
    lines = ["sku,name,price" + (",stock" if stock else "")]
    for _ in range(rng.randint(1, 10)):
        cell = "" if rng.random() < 0.2 else str(rng.randint(0, 12))
        lines.append(
            f"K-{rng.randint(0, n + 3)},x,{rng.choice(['1.00', '2'])}"
            + (f",{cell}" if stock else "")
        )
    return "\n".join(lines) + "\n"


def _upsert(text: str) -> tuple:
    result = process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": text}]})
    return (
        result["status"],
        sorted(StockLevel.objects.values_list("product__sku", "location__code", "quantity")),
        sorted(Product.objects.values_list("sku", "stock")),
    )


def _without_counts(self, where=EVERY):
    saved, self.counts = self.counts, {}
    try:
        return _product_count(self, where)
    finally:
        self.counts = saved


@pytest.mark.django_db
def test_levels_are_those_of_the_insert_over_every_changed_product(monkeypatch):
    counted = []

    def checked(self, where=EVERY):
        # The stage's count is the change rows' own: one row per product.
        if where is STOCK_UPDATED and where in self.counts:
            pks = [pk for (pk,) in self.values(["pk"], STOCK_UPDATED)]
            assert self.counts[where] == len(pks) == len(set(pks))
            counted.append(len(pks))
        return _product_count(self, where)

    chunk = upserts.STAGE_CHUNKS[connection.vendor]
    for seed in range(120):
        rng = random.Random(seed)
        code = "W0" if rng.random() < 0.2 else "DEFAULT"
        monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, rng.choice([3, chunk]))
        with transaction.atomic(), override_settings(STOCKPIPE_DEFAULT_LOCATION=code):
            if code == "W0":
                Location.objects.create(code="W0", name="W0")
            text = _catalogue(rng)
            monkeypatch.setattr(StagedChanges, "product_count", checked)
            point = transaction.savepoint()
            with_count = _upsert(text)
            transaction.savepoint_rollback(point)
            monkeypatch.setattr(StagedChanges, "product_count", _without_counts)
            without = _upsert(text)
            transaction.set_rollback(True)
        assert with_count == without, (seed, text)
    if connection.vendor == "sqlite":  # upserts changing existing products' stock compared
        assert sum(counted) > 100
    else:  # PostgreSQL updates and inserts in one statement: the count is not consulted
        assert counted == []
