"""Generic checks on raw input, shared by the input middleware, the forms and the pipelines.

Limits: JSON nested deeper than ``MAX_JSON_DEPTH`` is refused before it is parsed (the
parser would otherwise recurse until ``RecursionError``); text with NUL or lone surrogates
cannot be stored (PostgreSQL refuses NUL), so it is refused, or made storable with
``storable`` where the input must still be recorded (a failed pipeline run's spec).
"""

from __future__ import annotations

import re
import unicodedata
from typing import Any

import orjson

MAX_JSON_DEPTH = 32
# Uploaded files (the pipeline page's .csv/.json): on top of DATA_UPLOAD_MAX_MEMORY_SIZE.
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
BOM = "\ufeff"

# A JSON string; the closing quote is optional so that an unterminated string is consumed
# once (to the end) instead of being re-scanned from every later quote (quadratic time).
_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_BRACKETS = re.compile(r"[\[\]{}]")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")


def strip_bom(text: str) -> str:
    """CSV and JSON text without a leading UTF-8 byte order mark (spreadsheets write one)."""
    return text[1:] if text.startswith(BOM) else text


def json_depth(text: str | bytes) -> int:
    """How deeply the arrays and objects of a JSON document nest (0 for a scalar).

    Works on the raw text (strings skipped), so it is safe on any input, valid or not.
    """
    if isinstance(text, (bytes, bytearray)):
        text = bytes(text).decode("utf-8", errors="replace")
    depth = deepest = 0
    for bracket in _BRACKETS.findall(_JSON_STRING.sub("", text)):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def json_depth_message(limit: int = MAX_JSON_DEPTH) -> str:
    return f"JSON is nested deeper than {limit} levels"


def control_char_problem(value: str, *, what: str) -> str | None:
    """Why ``value`` (a URL path or query parameter) is refused: a control character."""
    for position, ch in enumerate(value, start=1):
        if unicodedata.category(ch) in ("Cc", "Cs"):
            return f"{what} contains the control character U+{ord(ch):04X} at {position}"
    return None


def unstorable_path(data: Any, loc: tuple = ()) -> tuple[tuple, str] | None:
    """The location of the first string (key or value) holding NUL or a lone surrogate."""
    if isinstance(data, str):
        match = _UNSTORABLE.search(data)
        return (loc, f"U+{ord(match.group()):04X}") if match else None
    if isinstance(data, dict):
        for key, value in data.items():
            here = (*loc, _replaced(key))
            found = unstorable_path(key, here) or unstorable_path(value, here)
            if found:
                return found
    elif isinstance(data, list):
        for index, value in enumerate(data):
            found = unstorable_path(value, (*loc, index))
            if found:
                return found
    return None


def has_unstorable(data: Any) -> bool:
    """Whether any string in ``data`` may hold NUL or a lone surrogate (fast: one orjson
    encoding; a false positive only costs ``storable`` a copy)."""
    try:
        encoded = orjson.dumps(data, default=str, option=orjson.OPT_NON_STR_KEYS)
    except (TypeError, orjson.JSONEncodeError):
        return True  # lone surrogates (not UTF-8), or a type orjson cannot encode
    return b"\\u0000" in encoded


def storable(data: Any) -> Any:
    """``data`` with NUL and lone surrogates replaced by U+FFFD in every string, so that a
    refused input can still be recorded (JSON columns, PostgreSQL); ``data`` itself when
    there is nothing to replace."""
    if not has_unstorable(data):
        return data
    return _replaced(data)


def _replaced(data: Any) -> Any:
    if isinstance(data, str):
        return _UNSTORABLE.sub("\ufffd", data)
    if isinstance(data, dict):
        return {_replaced(k): _replaced(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_replaced(v) for v in data]
    return data
