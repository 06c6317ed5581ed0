"""An upsert run inside a change batch someone else opened (``collecting_changes``: a
bulk write's, or a caller's) has the effects it has on its own, chunk by chunk: each
chunk's change set reads the stage, which the next chunk empties and refills."""

from __future__ import annotations

from contextlib import nullcontext
from decimal import Decimal

import pytest
from django.db import connection, transaction

from app.models import Product
from app.pipelines import upserts
from app.tracking.batch import collecting_changes
from app.utils.utils import process_pipeline
from tests.pipelines.test_identity import observe

pytestmark = pytest.mark.django_db


class _Undo(Exception):
    pass


def _feed() -> str:
    lines = ["sku,name,price,stock,low_stock_threshold"]
    for i in range(14):  # five chunks of three: updates, unchanged, new, crossing thresholds
        price = "10.00" if i % 3 else f"{11 + i}.25"
        lines.append(f"N-{i:02d},Name {i},{price},{(i * 5) % 9},{'' if i % 2 else 4}")
    return "\n".join(lines) + "\n"


def _run(*, nested: bool) -> tuple[str, dict]:
    try:
        with transaction.atomic():
            Product.objects.bulk_create(
                Product(sku=f"N-{i:02d}", name=f"Old {i}", price=Decimal("10.00"), stock=6)
                for i in range(0, 14, 2)
            )
            spec = {"name": "nested", "steps": [{"op": "upsert_products", "csv": _feed()}]}
            with collecting_changes() if nested else nullcontext():
                # A write of the outer block before the run: its effects (an alert opened)
                # are not the run's.
                Product.objects.create(sku="X-1", name="Other", price=Decimal("3.00"), stock=1)
                result = process_pipeline(spec)
            # The rows name their run ("pipeline:<id>"); ids differ between the two runs.
            seen = repr(observe()).replace(f"pipeline:{result['run_id']}", "pipeline:run")
            raise _Undo
    except _Undo:
        pass
    return seen, {
        k: v for k, v in result.items() if k not in ("run_id", "status_url", "duration_ms")
    }


def test_an_upsert_inside_an_open_batch_has_the_effects_it_has_alone(monkeypatch):
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 3)
    alone = _run(nested=False)
    assert "N-12" in alone[0] and "Decimal('23.25')" in alone[0]  # a price change's history
    assert alone[1]["totals"]["alerts_opened"] == 7  # X-1's is the outer block's
    assert _run(nested=True) == alone
