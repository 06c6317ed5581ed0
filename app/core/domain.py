"""The product's field rules, defined once for every entry point.

Each rule is a plain function ``<field>_problem(value) -> str | None`` (why the value is
refused, or ``None``). The API schemas, the pipeline spec (JSON rows and CSV cells), the
web and admin forms (through the model field validators) and ``Product.save()`` all call
these functions, so they accept and refuse exactly the same values:

* SKU: 1..64 characters, printable, no whitespace, no ``/``, not ``.`` or ``..`` (a SKU is
  one URL path segment and appears in e-mail subjects and CSV files);
* name: 1..200 characters, not blank, no control characters (line breaks, tabs, NUL, ...),
  no line or paragraph separators;
* price: a finite decimal, not negative, at most 12 digits of which at most 2 decimals;
* stock and low-stock threshold: integers from 0 to ``MAX_STOCK``;
* stock delta: an integer whose magnitude is at most ``MAX_STOCK``;
* webhook secret: the Standard Webhooks form, ``whsec_`` + standard base64 of 24 to 64 bytes.

Values are never altered to make them pass (no stripping): what is stored is what was sent.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Collection
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from django.core import validators as django_validators
from django.core.exceptions import ValidationError as DjangoValidationError
from pydantic import (
    AfterValidator,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

SKU_MAX_LENGTH = 64
NAME_MAX_LENGTH = 200
LABEL_MAX_LENGTH = 200
# Product.stock is a 32-bit integer column (PostgreSQL): no stock may exceed this.
MAX_STOCK = 2**31 - 1
PRICE_MAX_DIGITS = 12
PRICE_DECIMAL_PLACES = 2
MAX_PRICE = Decimal("9999999999.99")
CENT = Decimal("0.01")

# What no name or label may contain: the Unicode categories Cc (controls: C0, DEL, C1, so
# line breaks, tabs, NUL...), Cs (lone surrogates, not storable as UTF-8), Zl and Zp (line
# and paragraph separators), written out as a character class (checked per row, so fast).
_FORBIDDEN_IN_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff]")
# The common SKU, checked without a per-character loop: printable ASCII except space and "/".
_PLAIN_SKU = re.compile(rf"[\x21-\x2e\x30-\x7e]{{1,{SKU_MAX_LENGTH}}}")
_CHAR_NAMES = {
    "\x00": "NUL",
    "\t": "a tab",
    "\n": "a line break",
    "\r": "a carriage return",
    " ": "a space",
}


def describe_char(ch: str) -> str:
    """A readable name of a character for error messages (``a line break``, ``U+200B``)."""
    return _CHAR_NAMES.get(ch) or f"U+{ord(ch):04X}"


def text_problem(value: Any, *, what: str, max_length: int, allow_empty: bool) -> str | None:
    """Single-line text: no control characters, line breaks or lone surrogates."""
    if not isinstance(value, str):
        return f"{what} must be text"
    if not allow_empty and not value.strip():
        return f"{what} must not be empty or blank"
    if len(value) > max_length:
        return f"{what} must be at most {max_length} characters (it has {len(value)})"
    found = _FORBIDDEN_IN_TEXT.search(value)
    if found:
        return (
            f"{what} must not contain control characters or line breaks "
            f"({describe_char(found.group())} at character {found.start() + 1})"
        )
    return None


def sku_problem(value: Any) -> str | None:
    """Why ``value`` is not a SKU a product may be given, or ``None``."""
    if not isinstance(value, str):
        return "SKU must be text"
    if _PLAIN_SKU.fullmatch(value) and value not in (".", ".."):
        return None
    if not value:
        return "SKU must not be empty"
    if len(value) > SKU_MAX_LENGTH:
        return f"SKU must be at most {SKU_MAX_LENGTH} characters (it has {len(value)})"
    if value in (".", ".."):
        return "SKU must not be '.' or '..'"
    for position, ch in enumerate(value, start=1):
        if ch == "/":
            return f"SKU must not contain '/' (at character {position})"
        if ch.isspace():
            return f"SKU must not contain whitespace ({describe_char(ch)} at character {position})"
        if not ch.isprintable():
            return (
                "SKU must contain only printable characters "
                f"({describe_char(ch)} at character {position})"
            )
    return None


def name_problem(value: Any) -> str | None:
    """Why ``value`` is not a product name, or ``None``."""
    return text_problem(value, what="name", max_length=NAME_MAX_LENGTH, allow_empty=False)


def label_problem(value: Any) -> str | None:
    """Free single-line text such as a run name or a stock move's reason (may be empty)."""
    return text_problem(value, what="text", max_length=LABEL_MAX_LENGTH, allow_empty=True)


def sku_ref_problem(value: Any) -> str | None:
    """A SKU that names an existing product (lookups, filters): any stored SKU, legacy ones
    that break today's rule included, but never NUL or a lone surrogate (not storable)."""
    if not isinstance(value, str):
        return "SKU must be text"
    if not value:
        return "SKU must not be empty"
    if len(value) > SKU_MAX_LENGTH:
        return f"SKU must be at most {SKU_MAX_LENGTH} characters (it has {len(value)})"
    return unstorable_problem(value, what="SKU")


def unstorable_problem(value: str, *, what: str = "text") -> str | None:
    """Characters no database text column takes (PostgreSQL refuses NUL; lone surrogates
    cannot be encoded as UTF-8)."""
    found = _UNSTORABLE.search(value)
    if found:
        return f"{what} must not contain {describe_char(found.group())} (at character {found.start() + 1})"
    return None


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_DECIMAL = django_validators.DecimalValidator(PRICE_MAX_DIGITS, PRICE_DECIMAL_PLACES)


def price_problem(value: Any) -> str | None:
    """Why ``value`` (a ``Decimal``) is not a price; Django's ``DecimalValidator`` decides the
    digit counts, so the model, the admin and the API count them alike (``9.990`` has 3
    decimals)."""
    if not isinstance(value, Decimal):
        try:
            value = Decimal(str(value))
        except (InvalidOperation, ValueError):
            return "price must be a decimal number"
    if not value.is_finite():
        return "price must be a finite number"
    if value < 0:
        return "price must not be negative"
    _sign, digits, exponent = value.as_tuple()
    if -PRICE_DECIMAL_PLACES <= exponent <= 0 and len(digits) + exponent <= (
        PRICE_MAX_DIGITS - PRICE_DECIMAL_PLACES
    ):
        return None  # the common case, without the validator's work
    try:
        _DECIMAL(value)
    except DjangoValidationError as exc:
        return "price: " + " ".join(exc.messages)
    return None


WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
WEBHOOK_SECRET_MIN_BYTES = 24
WEBHOOK_SECRET_MAX_BYTES = 64
_BASE64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def webhook_secret_problem(value: Any) -> str | None:
    """Why ``value`` is not a webhook secret in the Standard Webhooks form, or ``None``.

    The form is ``whsec_`` + standard base64 (``A-Z a-z 0-9 + /``, padding optional) of 24
    to 64 random bytes; the decoded bytes are the HMAC key. Only that form decodes to the
    same key in every standard verifier (URL-safe ``-``/``_`` would be dropped by some).
    """
    if not isinstance(value, str):
        return "secret must be text"
    if not value.startswith(WEBHOOK_SECRET_PREFIX):
        return f"secret must start with {WEBHOOK_SECRET_PREFIX!r} (the Standard Webhooks form)"
    encoded = value[len(WEBHOOK_SECRET_PREFIX) :]
    if not _BASE64.fullmatch(encoded):
        return (
            f"secret must be {WEBHOOK_SECRET_PREFIX!r} followed by standard base64 "
            "(A-Z, a-z, 0-9, '+', '/', '=' padding only)"
        )
    try:
        key = base64.b64decode(encoded.rstrip("=") + "=" * (-len(encoded.rstrip("=")) % 4))
    except binascii.Error:
        return "secret is not valid base64"
    if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
        return (
            f"secret must encode {WEBHOOK_SECRET_MIN_BYTES} to {WEBHOOK_SECRET_MAX_BYTES} "
            f"bytes (it encodes {len(key)})"
        )
    return None


def stock_adjustment_error(sku: str, stock: int, delta: int) -> str | None:
    """Why ``stock + delta`` is not a stock ``sku`` may have, or ``None`` if it is one."""
    new = stock + delta
    if new < 0:
        return f"stock of {sku} would go negative: {stock} {delta:+d} = {new}"
    if new > MAX_STOCK:
        return f"stock of {sku} would exceed {MAX_STOCK}"
    return None


# --- Django: model field validators (run by full_clean, ModelForms and the admin) ------------


def validate_sku(value: Any) -> None:
    """Model/form validator for ``Product.sku``."""
    message = sku_problem(value)
    if message:
        raise DjangoValidationError(message, code="invalid_sku")


def validate_name(value: Any) -> None:
    """Model/form validator for ``Product.name``."""
    message = name_problem(value)
    if message:
        raise DjangoValidationError(message, code="invalid_name")


def validate_webhook_secret(value: Any) -> None:
    """Form validator for a new webhook secret (admin)."""
    message = webhook_secret_problem(value)
    if message:
        raise DjangoValidationError(message, code="invalid_secret")


def check_product_rules(product: Any, update_fields: Any = None) -> None:
    """Refuse to save a product whose SKU or name breaks its rule (``Product.save()``).

    Only values being written and changed since the row was read are checked, so a legacy row
    whose stored SKU breaks today's rule can still have its stock or price changed.
    """
    loaded = getattr(product, "_loaded", None) or {}
    errors = {}
    for field, problem in (("sku", sku_problem), ("name", name_problem)):
        if update_fields is not None and field not in update_fields:
            continue
        value = getattr(product, field)
        if field in loaded and loaded[field] == value and not product._state.adding:
            continue
        message = problem(value)
        if message:
            errors[field] = [message]
    if errors:
        raise DjangoValidationError(errors)


# --- pydantic: the API schemas and the pipeline spec --------------------------------------------


def _pydantic_check(problem):
    def check(value: Any) -> Any:
        message = problem(value)
        if message:
            raise PydanticCustomError("invalid_value", "{reason}", {"reason": message})
        return value

    return check


SKU_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": SKU_MAX_LENGTH,
    "pattern": r"^[^\s/\x00-\x1f\x7f-\x9f]+$",
    "description": "1 to 64 printable characters, no whitespace and no '/'.",
}
NAME_SCHEMA = {
    "type": "string",
    "minLength": 1,
    "maxLength": NAME_MAX_LENGTH,
    "pattern": r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*\S[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$",
    "description": "1 to 200 characters, not blank, no control characters or line breaks.",
}

Sku = Annotated[str, AfterValidator(_pydantic_check(sku_problem)), WithJsonSchema(SKU_SCHEMA)]
Name = Annotated[str, AfterValidator(_pydantic_check(name_problem)), WithJsonSchema(NAME_SCHEMA)]
_SKU_REF = re.compile(f"[^\x00\ud800-\udfff]{{1,{SKU_MAX_LENGTH}}}")


def _checked_sku_ref(value: str) -> str:
    """``sku_ref_problem`` as a pydantic check; its common case in one regex match (a spec
    lists a SKU per product, a map step 100,000 of them)."""
    if _SKU_REF.fullmatch(value):
        return value
    message = sku_ref_problem(value)
    if message:
        raise PydanticCustomError("invalid_value", "{reason}", {"reason": message})
    return value


SkuRef = Annotated[
    str,
    AfterValidator(_checked_sku_ref),
    WithJsonSchema(
        {
            "type": "string",
            "minLength": 1,
            "maxLength": SKU_MAX_LENGTH,
            "pattern": r"^[^\x00]+$",
            "description": "The SKU of a product (as stored).",
        }
    ),
]
Label = Annotated[
    str,
    AfterValidator(_pydantic_check(label_problem)),
    WithJsonSchema(
        {
            "type": "string",
            "maxLength": LABEL_MAX_LENGTH,
            "pattern": r"^[^\x00-\x1f\x7f-\x9f\u2028\u2029]*$",
        }
    ),
]


_PLAIN_CENTS = re.compile(r"[0-9]{1,10}\.[0-9]{2}")


def _checked_price(value: Decimal) -> Decimal:
    # The common case first, in one regex match on its text: not negative, cents given
    # (exponent -2), 10 whole digits at most; the checks below accept it as it is.
    if _PLAIN_CENTS.fullmatch(str(value)):
        return value
    return _checked_any_price(value)


def _checked_any_price(value: Decimal) -> Decimal:
    sign, digits, exponent = value.as_tuple()
    if not sign and exponent in (-2, -1, 0) and len(digits) + exponent <= 10:
        return value if exponent == -2 else value.quantize(CENT)  # the common case, fast
    message = price_problem(value)
    if message:
        raise PydanticCustomError("invalid_value", "{reason}", {"reason": message})
    if value.is_zero():  # "-0": plain zero, so every route stores and reports 0.00
        value = value.copy_abs()
    return value.quantize(CENT)  # "9.9" and 9.90 both mean 9.90


Price = Annotated[
    Decimal,
    Field(allow_inf_nan=False),
    AfterValidator(_checked_price),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "minimum": 0, "maximum": float(MAX_PRICE)},
                {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$"},
            ],
            "description": "Up to 10 digits and 2 decimals, not negative.",
        }
    ),
]
WebhookSecret = Annotated[
    str,
    AfterValidator(_pydantic_check(webhook_secret_problem)),
    WithJsonSchema(
        {
            "type": "string",
            "pattern": r"^whsec_[A-Za-z0-9+/]+={0,2}$",
            "minLength": 38,
            "maxLength": 94,
            "description": "Standard Webhooks form: 'whsec_' + base64 of 24 to 64 random bytes.",
        }
    ),
]
Stock = Annotated[int, Field(ge=0, le=MAX_STOCK)]
Threshold = Annotated[int, Field(ge=0, le=MAX_STOCK)]
Delta = Annotated[int, Field(ge=-MAX_STOCK, le=MAX_STOCK)]


# --- a SKU -> value map, validated in bulk ----------------------------------------------------
#
# A map step lists one SKU and one value per product: 100,000 of each are validated by one
# Python call per item for ``SkuRef`` and ``Price`` (their checks are Python functions).
# ``sku_map`` checks the common case of all of them at once, each kind with one regex
# match over the items joined by a separator no accepted item holds (and a count of the
# separators), and lets pydantic's own (compiled) validators do the rest; anything else
# takes the full per-item validation, which locates every error as before.

_SKU_REFS = re.compile(f"{_SKU_REF.pattern}(?:\x00{_SKU_REF.pattern})*")  # NUL-separated
_CENT_TEXTS = re.compile(f"{_PLAIN_CENTS.pattern}(?:\n{_PLAIN_CENTS.pattern})*")


def _all_plain(items: Collection[Any], pattern: re.Pattern[str], separator: str) -> bool:
    """Whether every item is a ``str`` matching ``pattern``, which excludes ``separator``:
    one match over the items joined by it, and a count (an item holding the separator
    would pass the match as two)."""
    if {*map(type, items)} != {str}:
        return False
    text = separator.join(items)
    return text.count(separator) == len(items) - 1 and pattern.fullmatch(text) is not None


def plain_sku_refs(keys: Collection[Any]) -> bool:
    """Whether every key is a ``str`` that ``SkuRef``'s fast path accepts."""
    return _all_plain(keys, _SKU_REFS, "\x00")


def plain_price_texts(values: Collection[Any]) -> bool:
    """Whether every value is a ``str`` of plain cents (``12.50``): parsed, each is a
    ``Decimal`` that ``Price``'s fast path accepts unchanged."""
    return _all_plain(values, _CENT_TEXTS, "\n")


def sku_map(
    value: Any, plain: Any, plain_values: Callable[[Collection[Any]], bool] | None = None
) -> Any:
    """``dict[SkuRef, value]`` with at least one item, as pydantic validates it, in bulk
    where it can: when every key passes ``plain_sku_refs`` and every value passes
    ``plain_values`` (given for a ``value`` with Python checks), the map is validated as
    ``dict[str, plain]``, ``plain`` being ``value`` without its Python checks, which accept
    such values unchanged. Otherwise, or if that fails, the full validation runs and
    raises its errors, located per item. Same result, same errors, same JSON Schema."""
    full_type = Annotated[dict[SkuRef, value], Field(min_length=1)]
    full = TypeAdapter(full_type)

    def validate(data: Any, handler: Callable[[Any], Any]) -> Any:
        if (
            type(data) is dict
            and plain_sku_refs(data)
            and (plain_values is None or plain_values(data.values()))
        ):
            try:
                return handler(data)
            except ValidationError:
                pass  # the full validation below says why, item by item
        return full.validate_python(data)

    return Annotated[
        dict[str, plain],
        Field(min_length=1),
        WrapValidator(validate),
        WithJsonSchema(full.json_schema(mode="validation"), mode="validation"),
        WithJsonSchema(full.json_schema(mode="serialization"), mode="serialization"),
    ]


PriceMap = sku_map(Price, Annotated[Decimal, Field(allow_inf_nan=False)], plain_price_texts)
StockMap = sku_map(Stock, Stock)
DeltaMap = sku_map(Delta, Delta)
