"""Import profiles: how a supplier's file maps onto product fields, checked and applied.

A profile (stored as ``app.models.ImportProfile``, used as a ``FeedProfile``) names the
supplier's columns for each product field, the file's dialect (delimiter, quote character,
encoding, decimal and thousands separators, header row) and defaults and transforms. This
module holds the rules only (no I/O): ``profile_errors`` checks a profile, ``FeedProfile``
turns one supplier cell into a product field's value or says why it cannot.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .domain import Name, Price, Sku, Stock, Threshold, label_problem
from .inputs import unstorable_path

TARGETS = ("sku", "name", "price", "stock", "low_stock_threshold")
REQUIRED = ("sku", "name", "price")
ENCODINGS = ("utf-8", "cp1252", "latin-1")
# "" means: detect from the header row (the candidate found most often in it).
DELIMITERS = ("", ",", ";", "\t", "|")
DECIMAL_SEPARATORS = (".", ",")
THOUSANDS_SEPARATORS = ("", ".", ",", " ", "'")
POLICIES = ("all_or_nothing", "skip_invalid_rows")
MAX_HEADER_ROW = 1000
MAX_FACTOR = Decimal(1000)
CENT = Decimal("0.01")

_ADAPTERS = {
    "sku": TypeAdapter(Sku),
    "name": TypeAdapter(Name),
    "price": TypeAdapter(Price),
    "stock": TypeAdapter(Stock),
    "low_stock_threshold": TypeAdapter(Threshold),
}


class CellError(ValueError):
    """A supplier cell cannot become the field's value; the message says why."""


@dataclass(frozen=True)
class FeedProfile:
    """A checked import profile (see ``profile_errors``), as the feed readers use it."""

    name: str
    columns: dict[str, str]  # supplier column -> product field
    delimiter: str = ""
    quotechar: str = '"'
    encoding: str = "utf-8"
    decimal_separator: str = "."
    thousands_separator: str = ""
    header_row: int = 1
    sheet: str = ""
    defaults: dict[str, Any] = field(default_factory=dict)
    price_factor: Decimal = Decimal(1)
    price_round_to: Decimal | None = None
    clamp_stock: bool = False

    def __post_init__(self) -> None:
        sep = re.escape(self.thousands_separator)
        dec = re.escape(self.decimal_separator)
        grouped = rf"\d{{1,3}}(?:{sep}\d{{3}})+" if self.thousands_separator else r"(?!)"
        pattern = rf"^([+-]?)((?:{grouped})|\d+)(?:{dec}(\d+))?$"
        object.__setattr__(self, "_number", re.compile(pattern))

    @property
    def column_of(self) -> dict[str, str]:
        """Product field -> supplier column."""
        return {target: column for column, target in self.columns.items()}

    def fingerprint(self) -> str:
        """A digest of everything that changes how a file is read (part of a preview's
        fingerprint: a profile edited after a preview makes the preview stale)."""
        data = {
            k: str(v) if isinstance(v, Decimal) else v
            for k, v in self.__dict__.items()
            if not k.startswith("_")
        }
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    # --- cells --------------------------------------------------------------------------

    def number(self, raw: Any) -> Decimal:
        """A supplier number: a spreadsheet number as is, text with the profile's separators."""
        if isinstance(raw, bool):
            raise CellError("not a number")
        if isinstance(raw, int):
            return Decimal(raw)
        if isinstance(raw, (float, Decimal)):
            number = Decimal(repr(raw)) if isinstance(raw, float) else raw
            if not number.is_finite():
                raise CellError("not a number")
            return number
        text = str(raw).strip().replace("\u00a0", " ")
        if self.thousands_separator != " ":
            text = text.replace(" ", "")
        match = self._number.match(text)  # type: ignore[attr-defined]
        if not match:
            hint = f"decimal separator {self.decimal_separator!r}"
            if self.thousands_separator:
                hint += f", thousands separator {self.thousands_separator!r}"
            raise CellError(f"not a number ({hint})")
        sign, whole, fraction = match.groups()
        if self.thousands_separator:
            whole = whole.replace(self.thousands_separator, "")
        return Decimal(f"{sign}{whole}.{fraction or '0'}")

    def value(self, target: str, raw: Any) -> Any:
        """The value of product field ``target`` from a non-empty supplier cell, transformed
        (price factor and rounding, stock clamped) and checked by the field's rule."""
        return _checked(target, self.convert(target, raw))

    def convert(self, target: str, raw: Any) -> Any:
        """``value`` without the field's rule (the caller checks the whole row at once)."""
        if target in ("sku", "name"):
            if isinstance(raw, float) and raw.is_integer():
                raw = int(raw)
            text = str(raw)
            # Supplier names wrap (quoted line breaks, double spaces): one line, single spaces.
            return " ".join(text.split()) if target == "name" else text.strip()
        number = self.number(raw)
        if target == "price":
            if self.price_factor != 1:
                number *= self.price_factor
            if self.price_round_to:
                step = self.price_round_to
                number = (number / step).to_integral_value(rounding=ROUND_HALF_UP) * step
            return number.quantize(CENT, rounding=ROUND_HALF_UP)
        if number != number.to_integral_value():
            raise CellError("not a whole number")
        count = int(number)
        if target == "stock" and self.clamp_stock and count < 0:
            count = 0
        return count


def _checked(target: str, value: Any) -> Any:
    try:
        return _ADAPTERS[target].validate_python(value)
    except ValidationError as exc:
        first = exc.errors()[0]
        msg = first["msg"]
        reason = msg[len("Value error, ") :] if msg.startswith("Value error, ") else msg
        raise CellError(reason) from None


def profile_errors(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every problem of a profile's settings, located by field (``[]``: usable).

    ``data`` holds ``FeedProfile``'s fields (missing ones take their defaults).
    """
    errors: list[dict[str, Any]] = []

    def error(loc: list[Any], msg: str) -> None:
        errors.append({"loc": loc, "msg": msg})

    unstorable = unstorable_path(data)
    if unstorable:  # NUL or a lone surrogate: no database stores it
        loc, char = unstorable
        return [{"loc": [str(p) for p in loc], "msg": f"contains {char}, which cannot be stored"}]

    name = data.get("name", "")
    if not isinstance(name, str) or not name.strip():
        error(["name"], "a profile needs a name")
    elif len(name) > 100 or label_problem(name):
        error(["name"], label_problem(name) or "at most 100 characters")
    columns = data.get("columns")
    if not isinstance(columns, dict) or not columns:
        error(["columns"], "map at least the supplier columns of sku, name and price")
        columns = {}
    seen_columns: dict[str, str] = {}
    seen_targets: dict[str, str] = {}
    for column, target in columns.items():
        if not isinstance(column, str) or not column.strip() or len(column) > 200:
            error(["columns", str(column)], "a supplier column name is 1 to 200 characters")
            continue
        key = column.strip()
        if key in seen_columns:
            error(["columns", column], f"column {key!r} is mapped twice")
            continue
        seen_columns[key] = column
        if target not in TARGETS:
            error(
                ["columns", column],
                f"unknown target field {target!r} for column {column!r} "
                f"(known: {', '.join(TARGETS)})",
            )
            continue
        if target in seen_targets:
            error(
                ["columns", column],
                f"duplicate mapping: columns {seen_targets[target]!r} and {column!r} "
                f"both map to {target!r}",
            )
            continue
        seen_targets[target] = column
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        error(["defaults"], "defaults are an object: field -> value")
        defaults = {}
    for target, value in defaults.items():
        if target == "sku":
            error(["defaults", "sku"], "sku cannot have a default: every row needs its own")
        elif target not in TARGETS:
            error(["defaults", target], f"unknown field {target!r} (known: {', '.join(TARGETS)})")
        elif not isinstance(value, (str, int, float, Decimal)) or isinstance(value, bool):
            error(["defaults", target], "a default is a text or a number")
        else:
            try:
                FeedProfile(name="", columns={}).value(target, value)
            except CellError as exc:
                error(["defaults", target], f"{exc} (got {value!r})")
    if columns and "sku" not in seen_targets:
        error(["columns"], "no column maps to 'sku'")
    for target in REQUIRED[1:]:
        if columns and target not in seen_targets and target not in defaults:
            error(["columns"], f"no column maps to {target!r} and it has no default")
    delimiter = data.get("delimiter", "")
    quotechar = data.get("quotechar", '"')
    decimal = data.get("decimal_separator", ".")
    thousands = data.get("thousands_separator", "")
    if delimiter not in DELIMITERS:
        error(["delimiter"], f"delimiter must be one of {DELIMITERS} ('' detects it)")
    if (
        not isinstance(quotechar, str)
        or len(quotechar) != 1
        or quotechar.isalnum()
        or not quotechar.isprintable()
        or quotechar.isspace()
    ):
        error(
            ["quotechar"], "the quote character is one printable character, not a letter or digit"
        )
    elif quotechar == delimiter or quotechar in "\r\n":
        error(["quotechar"], "the quote character cannot be the delimiter or a line break")
    if data.get("encoding", "utf-8") not in ENCODINGS:
        error(["encoding"], f"encoding must be one of {', '.join(ENCODINGS)}")
    if decimal not in DECIMAL_SEPARATORS:
        error(["decimal_separator"], "the decimal separator is '.' or ','")
    if thousands not in THOUSANDS_SEPARATORS:
        error(["thousands_separator"], f"thousands separator must be one of {THOUSANDS_SEPARATORS}")
    elif thousands and thousands == decimal:
        error(["thousands_separator"], "the thousands and decimal separators must differ")
    header_row = data.get("header_row", 1)
    if not isinstance(header_row, int) or isinstance(header_row, bool):
        error(["header_row"], "the header row is a whole number")
    elif not 1 <= header_row <= MAX_HEADER_ROW:
        error(["header_row"], f"the header row is between 1 and {MAX_HEADER_ROW}")
    sheet = data.get("sheet", "")
    if not isinstance(sheet, str) or len(sheet) > 100 or label_problem(sheet):
        error(["sheet"], "a sheet name is at most 100 characters, no control characters")
    factor = _decimal(data.get("price_factor", 1))
    if factor is None or not Decimal(0) < factor <= MAX_FACTOR or factor.as_tuple().exponent < -6:
        error(
            ["price_factor"],
            f"bad factor: a number above 0 and at most {MAX_FACTOR}, at most 6 decimals",
        )
    round_to = data.get("price_round_to")
    if round_to is not None:
        step = _decimal(round_to)
        if step is None or step <= 0 or step > Decimal(1000) or step % CENT:
            error(["price_round_to"], "rounding step: a positive multiple of 0.01, e.g. 0.05")
    if not isinstance(data.get("clamp_stock", False), bool):
        error(["clamp_stock"], "clamp_stock is true or false")
    return errors


def _decimal(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        number = Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None
    return number if number.is_finite() else None


def feed_profile(data: dict[str, Any]) -> FeedProfile:
    """A ``FeedProfile`` from checked settings (``profile_errors(data)`` is empty)."""
    round_to = data.get("price_round_to")
    return FeedProfile(
        name=data["name"],
        columns={str(k).strip(): v for k, v in data["columns"].items()},
        delimiter=data.get("delimiter", ""),
        quotechar=data.get("quotechar", '"'),
        encoding=data.get("encoding", "utf-8"),
        decimal_separator=data.get("decimal_separator", "."),
        thousands_separator=data.get("thousands_separator", ""),
        header_row=data.get("header_row", 1),
        sheet=data.get("sheet", "") or "",
        defaults=dict(data.get("defaults") or {}),
        price_factor=Decimal(str(data.get("price_factor", 1))),
        price_round_to=Decimal(str(round_to)) if round_to not in (None, "") else None,
        clamp_stock=bool(data.get("clamp_stock", False)),
    )
