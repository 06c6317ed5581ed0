"""``app.core.encoding``: orjson where it can, the standard library where it cannot."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.core.serializers.json import DjangoJSONEncoder

from app.core.encoding import FastJSONEncoder, dumps
from app.models import PipelineRun
from app.utils.utils import process_pipeline


@pytest.mark.parametrize(
    "value",
    [
        {"big": 2**70, "small": -(2**70)},  # beyond orjson's 64 bits
        {1: "int key", 2.5: "float key"},  # keys orjson refuses
        {"price": Decimal("9.90"), "at": datetime(2026, 11, 25, 3, 4, 5, 678901, tzinfo=UTC)},
        ["ünïcode", None, True, 1.5],
    ],
    ids=["big ints", "non-string keys", "default types", "plain"],
)
def test_same_document_as_the_standard_library(value):
    expected = json.dumps(value, cls=DjangoJSONEncoder)
    assert json.loads(FastJSONEncoder().encode(value)) == json.loads(expected)
    assert json.loads(dumps(value, default=DjangoJSONEncoder().default)) == json.loads(expected)


@pytest.mark.django_db
def test_a_spec_orjson_cannot_encode_is_still_recorded():
    result = process_pipeline(
        {"name": "big", "steps": [{"op": "adjust_stock", "deltas": {"A": 2**70}}]}
    )
    assert result["status"] == "failed" and result["error"]["kind"] == "invalid"
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert run.spec["steps"][0]["deltas"]["A"] == 2**70
