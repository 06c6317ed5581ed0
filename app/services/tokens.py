"""API tokens: random secrets of which only a SHA-256 digest is stored.

A token looks like ``sp_<prefix>_<secret>``; the prefix lets people tell tokens apart in lists
without the secret ever being stored or shown again.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.http import HttpRequest
from django.utils import timezone

from ..models import ApiToken

LAST_USED_RESOLUTION = timedelta(minutes=1)


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it with the raw secret, which is never stored."""
    prefix = secrets.token_hex(4)
    raw = f"sp_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, key_hash=_digest(raw))
    return token, raw


def revoke_token(token: ApiToken) -> None:
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])


def user_for_token(raw: str):
    """The active user a raw token belongs to, or None (unknown, revoked or inactive user)."""
    # key_hash is unique: a bare LIMIT 1, without the ORDER BY that .first() would add.
    matches = ApiToken.objects.select_related("user").filter(
        key_hash=_digest(raw), revoked_at__isnull=True
    )
    token = next(iter(matches.order_by()[:1]), None)
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
    return token.user


def bearer_user(request: HttpRequest):
    """The user of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return user_for_token(raw.strip())
