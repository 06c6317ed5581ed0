"""Webhook signatures: HMAC-SHA256 over ``"<timestamp>.<body>"`` with the subscription secret.

Headers sent with every delivery::

    X-Stockpipe-Timestamp: 1764028800
    X-Stockpipe-Signature: sha256=<hex HMAC-SHA256(secret, b"1764028800." + body)>

The timestamp is inside the signed message, so a captured request cannot be replayed
later with a fresh timestamp; receivers reject timestamps outside a tolerance window.
This module has no Django dependency: receivers may copy it as it is.
"""

from __future__ import annotations

import hashlib
import hmac
import time

PREFIX = "sha256="


def _bytes(value: str | bytes) -> bytes:
    return value.encode() if isinstance(value, str) else bytes(value)


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
    """True if ``signature`` signs ``body`` at ``timestamp`` and the timestamp is fresh.

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
