"""A user's model permissions from the shared cache, so an API write checks them without SQL.

Django's ``ModelBackend`` reads a user's permissions with two queries (the user's own and
their groups') once per request: for ``POST /api/reservations`` two of seven statements.
``CachedPermissionBackend`` sits before it in ``AUTHENTICATION_BACKENDS`` and answers
``has_perm`` from an entry per user in the shared cache (``cache_guard.enabled()``; never a
per-process cache), read from the near cache, so a hit costs no round trip:

* every entry is stamped with a *generation*, one key for all users; an entry stamped with
  another generation is ignored and rebuilt from the database;
* any change of permissions (a user's permissions or groups, a group's permissions, a
  group, permission or content type saved or deleted, and every ``migrate``: migrations
  write through historical models, whose signals name another sender) invalidates the
  generation with ``cache_guard.invalidate``: tombstoned before the transaction commits
  and again after, read-your-writes inside it; a reader that read the old generation
  before the change can only store its entry under that generation, which never comes
  back (a new one is random);
  saving a user invalidates that user's entry as well;
* superusers, inactive and anonymous users get nothing from it (``ModelBackend`` answers,
  ``User.has_perm`` decides for active superusers first): a superuser's entry would list
  every permission and outlive a demotion, however it is written (``queryset.update()``
  sends no signal);
* an entry is the user's whole set (``ModelBackend``'s own answer, stored), so a permission
  it lacks is refused from it too (``has_perm`` raises ``PermissionDenied``, which ends
  Django's walk of the backends) instead of costing ``ModelBackend``'s two queries: every
  page asks for permissions its user may not have (the navigation's links);
* the fill reads the primary, never the read replica (``app.core.dbrouter``): a lagging
  replica's permissions would be kept for ``MAX_AGE``.

Writes that send no signal (grants as well as revocations) are seen within ``MAX_AGE``
seconds: raw SQL, ``queryset.update()`` of groups or permissions, and rows of the
auto-created many-to-many tables written directly
(``User.user_permissions.through.objects.filter(...).delete()`` or ``bulk_create``: Django
sends no signal for those models), not through the relation's ``add``/``remove``/``set``/
``clear``. If the cache cannot be reached, reads fall back to ``ModelBackend`` and an
invalidation is logged by ``cache_guard``, not raised (a change of permissions must commit while Redis is down):
an entry written before the outage may then be used for up to ``MAX_AGE`` once it is back.
Authenticates nobody: ``authenticate`` and ``get_user`` return ``None``.
"""

from __future__ import annotations

import copy
import logging
import secrets
from typing import Any

from django.contrib.auth.backends import ModelBackend
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.db import DEFAULT_DB_ALIAS

from ..core import dbrouter
from . import cache_guard

logger = logging.getLogger(__name__)

GENERATION_KEY = "auth:perms:generation"
MAX_AGE = 300
GENERATION_MAX_AGE = 86_400


def _key(user_id: Any) -> str:
    return f"auth:perms:v1:{user_id}"


class CachedPermissionBackend:
    """``has_perm`` / ``get_all_permissions`` of an active user, from the shared cache.

    Not a ``BaseBackend``: without ``get_user`` it is never the backend a session records
    (``login``, the test client's ``force_login`` pick the first one that has it)."""

    def authenticate(self, request, **credentials) -> None:
        return None

    def get_all_permissions(self, user_obj, obj=None) -> set[str]:
        return self._known(user_obj, obj) or set()

    def has_perm(self, user_obj, perm: str, obj=None) -> bool:
        known = self._known(user_obj, obj)
        if known is None:
            return False  # ModelBackend, next in line, answers as it always did
        if perm in known:
            return True
        raise PermissionDenied  # the whole set: ModelBackend would refuse it as well

    def _known(self, user_obj, obj) -> set[str] | None:
        """The user's whole set of permissions, or None where this backend has no say."""
        if obj is not None or not user_obj.is_active or user_obj.is_anonymous:
            return None
        if user_obj.is_superuser:  # never cached: it would outlive a demotion
            return None
        if not hasattr(user_obj, "_cached_perms"):
            user_obj._cached_perms = cached_permissions(user_obj)
        return user_obj._cached_perms


def cached_permissions(user) -> set[str] | None:
    """``ModelBackend().get_all_permissions(user)``, from the cache when the entry is of the
    current generation, else read now; None without a shared cache or if it fails."""
    if not cache_guard.enabled():
        return None  # ModelBackend, next in line, answers as it always did
    try:
        generation, ticket = cache_guard.get(GENERATION_KEY)
        if generation is None:
            perms = _read(user)
            if ticket is not None:  # absent (not invalidated just now): start a generation
                cache_guard.fill(ticket, secrets.token_hex(16), GENERATION_MAX_AGE)
            return perms
        entry = cache.get(_key(user.pk))
        if isinstance(entry, list | tuple) and len(entry) == 2 and entry[0] == generation:
            return set(entry[1])
        perms = _read(user)
        cache.set(_key(user.pk), (generation, sorted(perms)), MAX_AGE)
        return perms
    except Exception:  # the cache is an optimisation: ModelBackend still answers
        logger.warning("permission cache unavailable", exc_info=True)
        return None


# Where ModelBackend memoises a user's permissions on the instance.
_MODELBACKEND_MEMOS = ("_perm_cache", "_user_perm_cache", "_group_perm_cache")


def _read(user) -> set[str]:
    """From the primary, and from the database: what is read here is kept for ``MAX_AGE``,
    so not the set ``ModelBackend`` memoised on this instance (maybe before a grant)."""
    unmemoised = copy.copy(user)
    for name in _MODELBACKEND_MEMOS:
        unmemoised.__dict__.pop(name, None)
    with dbrouter.primary_reads():
        return set(ModelBackend().get_all_permissions(unmemoised))


def forget_all(using: str = DEFAULT_DB_ALIAS) -> None:
    """Permissions changed somewhere: no cached entry may be used any more."""
    cache_guard.invalidate([GENERATION_KEY], using=using)


def forget_user(user, using: str = DEFAULT_DB_ALIAS) -> None:
    """``user`` was saved (flags such as ``is_superuser`` may have changed): drop its entry."""
    if user.pk is not None:
        cache_guard.invalidate([_key(user.pk)], using=using)
