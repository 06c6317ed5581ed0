"""The SQL route's chunks taken a whole CSV block at a time (``UpsertProducts._run_staged``)
when blocks are smaller than a chunk: the effects of both routes over many chunks, with a
SKU repeated in another block and rejected rows, as ``test_upsert_staged`` checks them with
blocks larger than a chunk (where every block is chunked row by row)."""

from __future__ import annotations

import pytest

from app.pipelines import rows as rows_module
from tests.pipelines.test_upsert_staged import (
    products,  # noqa: F401 (fixture)
)
from tests.pipelines.test_upsert_staged import (
    test_both_routes_have_the_same_effects_over_many_chunks as same_effects,
)

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("batch", [7, 300, 299])
def test_both_routes_have_the_same_effects_with_blocks_smaller_than_a_chunk(
    products,  # noqa: F811
    monkeypatch,
    batch,
):
    monkeypatch.setattr(rows_module, "FAST_BATCH", batch)  # STAGE_CHUNKS is 300 there
    whole = []
    real = rows_module._whole_block
    monkeypatch.setattr(rows_module, "_whole_block", lambda *a: whole.append(r := real(*a)) or r)
    same_effects(products, True, monkeypatch)
    assert any(r is not None for r in whole)  # some blocks were taken whole
