"""API tokens: random secrets of which only a SHA-256 digest is stored.

A token looks like ``sp_<prefix>_<secret>``; the prefix lets people tell tokens apart in lists
without the secret ever being stored or shown again.

With a shared cache, a valid token's digest maps to its user's identity (id, username and
flags, never the password hash) for at most ``CACHE_MAX_AGE`` seconds, so an API request
needs no query to authenticate. Revocation stays immediate: ``revoke_token`` and every
save or delete of a token or of its user invalidate the entry (``app.services.cache_guard``
keeps a concurrent reader from storing the pre-revocation state). A superuser's identity is
never cached (as its permissions are not, ``app.services.permissions``): it would outlive a
demotion written without a signal (``queryset.update()``, raw SQL), which for other users
counts within ``CACHE_MAX_AGE`` (a deactivation so written too). If the cache cannot be
reached, ``cache_guard`` logs that invalidation instead of raising it (a revocation or
deactivation must commit while Redis is down): an entry written before the outage may then
be used for up to ``CACHE_MAX_AGE`` seconds once it is back. A user's permissions are cached apart, by
``app.services.permissions``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.contrib.auth import get_user_model
from django.db import DEFAULT_DB_ALIAS
from django.http import HttpRequest
from django.utils import timezone

from ..models import ApiToken
from . import cache_guard

LAST_USED_RESOLUTION = timedelta(minutes=1)
CACHE_MAX_AGE = 60


def _digest(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def create_token(user, name: str) -> tuple[ApiToken, str]:
    """Create a token for ``user``; return it with the raw secret, which is never stored."""
    prefix = secrets.token_hex(4)
    raw = f"sp_{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(user=user, name=name, prefix=prefix, key_hash=_digest(raw))
    return token, raw


def _cache_key(digest: str) -> str:
    # v2: the entry is a name -> value mapping (v1 held a field list and a value tuple).
    return "api:token:v2:" + digest


def cache_key(raw: str) -> str:
    """The cache key of a raw token's entry (to fetch it with others: ``user_for_token``)."""
    return _cache_key(_digest(raw))


def revoke_token(token: ApiToken) -> None:
    """Revoke ``token``; it stops working at once (also where its user was cached)."""
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
    forget_token(token)  # the post_save receiver does it too; revocation must not depend on it


def forget_token(token: ApiToken, using: str = DEFAULT_DB_ALIAS) -> None:
    """Drop the cached identity of ``token`` (it was saved, revoked or deleted)."""
    cache_guard.invalidate([_cache_key(token.key_hash)], using=using)


def forget_user_tokens(user, using: str = DEFAULT_DB_ALIAS) -> None:
    """Drop the cached identity of every token of ``user`` (it was changed or deactivated)."""
    if not cache_guard.enabled() or user.pk is None:
        return
    digests = (
        ApiToken.objects.using(using).filter(user_id=user.pk).values_list("key_hash", flat=True)
    )
    cache_guard.invalidate([_cache_key(digest) for digest in digests], using=using)


def _identity_fields() -> list[str]:
    """The user fields kept in the cache: identity and flags, never secrets."""
    model = get_user_model()
    names = [model._meta.pk.attname, model.USERNAME_FIELD, "is_active", "is_staff", "is_superuser"]
    present = {f.attname for f in model._meta.concrete_fields}
    return list(dict.fromkeys(name for name in names if name in present))


def _identity(user) -> dict[str, object]:
    """The cache entry of ``user``: its identity fields by name."""
    return {name: getattr(user, name) for name in _identity_fields()}


def _user_from_identity(identity: dict[str, object]):
    """A user instance with only the cached fields loaded, the rest deferred.

    ``Model.from_db`` pairs values with ``field_names`` in the model's field order, not in
    the order given; the names are therefore put in that order here, from the mapping.
    """
    model = get_user_model()
    names = [f.attname for f in model._meta.concrete_fields if f.attname in identity]
    return model.from_db(DEFAULT_DB_ALIAS, names, [identity[name] for name in names])


def user_for_token(raw: str, entry: cache_guard.Entry | None = None):
    """The active user a raw token belongs to, or None (unknown, revoked or inactive user).

    A cached user has only its identity fields loaded; others load on first access.
    ``entry``: the token's cache entry if the caller fetched it already (``cache_key``).
    """
    digest = _digest(raw)
    ticket = None
    if cache_guard.enabled():
        cached, ticket = entry or cache_guard.get(_cache_key(digest))
        if isinstance(cached, dict) and not cached.get("is_superuser"):
            return _user_from_identity(cached)
    # key_hash is unique: a bare LIMIT 1, without the ORDER BY that .first() would add.
    matches = ApiToken.objects.select_related("user").filter(
        key_hash=digest, revoked_at__isnull=True
    )
    token = next(iter(matches.order_by()[:1]), None)
    if token is None or not token.user.is_active:
        return None
    now = timezone.now()
    last_used = token.last_used_at
    if last_used is None or now - last_used > LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        last_used = now
    user = token.user
    if ticket is not None and not user.is_superuser:
        # Expire when last_used_at is due again, so the next miss records the use: the
        # column keeps its one-minute resolution and is still written at most once a minute.
        due = (last_used + LAST_USED_RESOLUTION - now).total_seconds()
        cache_guard.fill(ticket, _identity(user), min(CACHE_MAX_AGE, due))
    return user


def has_bearer(request: HttpRequest) -> bool:
    """Whether the request names a bearer token: then the token alone authenticates it.

    A token is a credential a browser never sends by itself, so such a request needs no
    CSRF check, and a session cookie sent alongside is ignored (a wrong token is 401, not a
    silent fall-back to the cookie).
    """
    scheme, _, _ = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer"


def bearer_user(request: HttpRequest):
    """The user of an ``Authorization: Bearer <token>`` header, or None."""
    header = request.headers.get("Authorization", "")
    scheme, _, raw = header.partition(" ")
    if scheme.lower() != "bearer" or not raw.strip():
        return None
    return user_for_token(raw.strip())
