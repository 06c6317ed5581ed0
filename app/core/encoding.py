"""JSON encoding for large payloads (pipeline specs, rows sent to the database as JSON).

orjson encodes a 100,000-entry spec about fifteen times faster than the standard library.
What it cannot encode (an integer beyond 64 bits, a non-string key) goes to the standard
encoder, so the output's meaning never depends on which encoder ran.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import orjson
from django.core.serializers.json import DjangoJSONEncoder


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """``json.dumps(value, default=default, ensure_ascii=False)``, compact. Datetimes go to
    ``default`` too (orjson would format them its own way); NaN and infinities, which JSON
    has no value for, become null."""
    try:
        return orjson.dumps(value, default=default, option=orjson.OPT_PASSTHROUGH_DATETIME).decode()
    except TypeError:  # orjson.JSONEncodeError included
        return json.dumps(value, default=default, ensure_ascii=False, separators=(",", ":"))


class FastJSONEncoder(DjangoJSONEncoder):
    """``DjangoJSONEncoder`` (Decimals, dates, UUIDs...) encoded by orjson where it can."""

    def encode(self, o: Any) -> str:
        if self.indent is not None or self.sort_keys:
            return super().encode(o)
        return dumps(o, default=self.default)


def loads(text: str) -> Any:
    """``json.loads(text)``, by orjson where it can (it refuses integers beyond 64 bits)."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)
