"""Cells written for spreadsheets: text a spreadsheet would run as a formula is neutralised."""

from __future__ import annotations

from typing import Any

# What Excel, LibreOffice and Google Sheets treat as the start of a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    """``value`` as cell text; text starting like a formula gets a leading apostrophe, which
    spreadsheets show as text (the value is still readable, never evaluated)."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text
