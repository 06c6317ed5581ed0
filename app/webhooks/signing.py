"""Webhook signatures: the Standard Webhooks scheme, and stockpipe's original one beside it.

Headers sent with every delivery::

    webhook-id: 6f1c0c4e-...                       (the event id, the same on every retry)
    webhook-timestamp: 1764028800
    webhook-signature: v1,<base64 HMAC-SHA256(key, b"<id>.<timestamp>." + body)> [v1,<...>]
    X-Stockpipe-Timestamp: 1764028800
    X-Stockpipe-Signature: sha256=<hex HMAC-SHA256(legacy key, b"1764028800." + body)>

Standard Webhooks (https://www.standardwebhooks.com/): the secret is ``whsec_`` + base64 of
the key bytes; ``webhook-signature`` is a space-separated list, one signature per key that
is valid at the time (two during a secret rotation's overlap). Any standard verifier (the
``standardwebhooks`` or ``svix`` packages, ...) checks it.

``X-Stockpipe-Signature`` (kept for existing receivers) is keyed with the UTF-8 bytes of
the secret *string* as the receiver was given it (see ``docs/webhooks.md``, "Secrets").

Both timestamps are inside the signed message, so a captured request cannot be replayed
later with a fresh timestamp; receivers reject timestamps outside a tolerance window.
This module has no Django dependency: receivers may copy it as it is.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

PREFIX = "sha256="
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
SECRET_BYTES = 32  # the Standard Webhooks form allows 24 to 64


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


# --- Standard Webhooks --------------------------------------------------------------------


def new_standard_secret() -> str:
    """A fresh secret in the Standard Webhooks form: ``whsec_`` + base64 of 32 random bytes."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode()


def standard_key(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret: its base64 part, decoded (padding optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX).rstrip("=")
    return base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)


def standard_secret_from_legacy(legacy_secret: str) -> str:
    """The standard-form secret whose key is the bytes of an older stockpipe secret.

    Migration 0006 gives every subscription whose secret was not in the standard form this
    secret, so its ``webhook-signature`` key is exactly the key its ``X-Stockpipe-Signature``
    has always used: a receiver derives it from the secret it already holds.
    """
    return SECRET_PREFIX + base64.b64encode(legacy_secret.encode()).decode()


def sign_standard(key: bytes, msg_id: str, timestamp: int | str, body: str | bytes) -> str:
    """One ``webhook-signature`` entry: ``v1,`` + base64 HMAC-SHA256 of ``id.timestamp.body``."""
    message = f"{msg_id}.{timestamp}.".encode() + _bytes(body)
    return "v1," + base64.b64encode(hmac.new(key, message, hashlib.sha256).digest()).decode()


def standard_signature_header(
    keys: Iterable[bytes], msg_id: str, timestamp: int | str, body: str | bytes
) -> str:
    """The ``webhook-signature`` value: one signature per key, space-separated."""
    return " ".join(sign_standard(key, msg_id, timestamp, body) for key in keys)


# --- X-Stockpipe-Signature (the original scheme) -------------------------------------------


def sign(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The ``X-Stockpipe-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    message = f"{timestamp}.".encode() + _bytes(body)
    return PREFIX + hmac.new(_bytes(secret), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    timestamp: str | int | None,
    body: str | bytes,
    signature: str | None,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """True if ``signature`` (``X-Stockpipe-Signature``) signs ``body`` at ``timestamp`` and
    the timestamp is fresh.

    ``body`` must be the raw request body exactly as received (not re-serialised JSON).
    ``tolerance`` is the allowed clock difference in seconds, either way.
    """
    if not timestamp or not signature:
        return False
    stamp = str(timestamp).strip()
    if not stamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(stamp)) > tolerance:
        return False
    expected = sign(secret, stamp, body)
    return hmac.compare_digest(expected.encode(), signature.strip().encode())
