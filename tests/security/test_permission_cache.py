"""Cached permissions (``app.services.permissions``) against real Redis: a hit answers
``has_perm`` without a query, and every change of who may do what is seen at once, in this
process, inside the changing transaction, and in another process."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.db import transaction

from app.services import cache_guard
from tests.api.conftest import user_with
from tests.reliability.conftest import database_url

from .conftest import REDIS_CACHE

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
PERM = "app.add_reservation"


@pytest.fixture
def shared(redis_cache, monkeypatch):
    """Redis, and tombstones short enough that waiting one out stays quick."""
    monkeypatch.setattr(cache_guard, "TOMBSTONE_TTL", 1)
    return redis_cache


def fresh(user):
    """The user as a new request sees it (nothing memoised on the instance)."""
    return get_user_model().objects.get(pk=user.pk)


def warm(user) -> None:
    """Past the tombstone of the last change, then cached by one check."""
    time.sleep(cache_guard.TOMBSTONE_TTL + 0.1)
    assert fresh(user).has_perm(PERM)
    assert fresh(user).has_perm(PERM)


def test_a_cached_permission_costs_no_query(shared, django_assert_num_queries):
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    again = fresh(user)
    with django_assert_num_queries(0):
        assert again.has_perm(PERM)
        assert again.has_perms([PERM])


def test_a_denial_is_asked_of_the_database(shared):
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    assert not fresh(user).has_perm("app.delete_product")


def _direct(user):
    user.user_permissions.remove(Permission.objects.get(codename="add_reservation"))


def _clear(user):
    user.user_permissions.clear()


def _permission_deleted(user):
    Permission.objects.get(codename="add_reservation").delete()


@pytest.mark.parametrize("revoke", [_direct, _clear, _permission_deleted])
def test_revoking_a_users_permission_is_seen_at_once(shared, revoke):
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    revoke(user)
    assert not fresh(user).has_perm(PERM)


def _group_permission_removed(user, group):
    group.permissions.remove(Permission.objects.get(codename="add_reservation"))


def _left_group(user, group):
    user.groups.remove(group)


def _group_emptied(user, group):
    group.user_set.clear()


def _group_deleted(user, group):
    group.delete()


@pytest.mark.parametrize(
    "revoke", [_group_permission_removed, _left_group, _group_emptied, _group_deleted]
)
def test_revoking_through_a_group_is_seen_at_once(shared, revoke):
    user = user_with(is_superuser=False)
    group = Group.objects.create(name="clerks")
    group.permissions.add(Permission.objects.get(codename="add_reservation"))
    user.groups.add(group)
    warm(user)
    revoke(user, group)
    assert not fresh(user).has_perm(PERM)


def test_a_grant_is_seen_at_once(shared):
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    assert not fresh(user).has_perm("app.change_product")
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    assert fresh(user).has_perm("app.change_product")


def test_the_changing_transaction_reads_its_own_revocation(shared):
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    with transaction.atomic():
        _direct(user)
        assert not fresh(user).has_perm(PERM)
    assert not fresh(user).has_perm(PERM)


def test_inactive_users_have_no_permission_even_when_cached(shared):
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    get_user_model().objects.filter(pk=user.pk).update(is_active=False)
    assert not fresh(user).has_perm(PERM)


READER = textwrap.dedent(
    f"""
    import sys
    import django
    django.setup()
    from django.contrib.auth import get_user_model
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    for line in sys.stdin:
        user = get_user_model().objects.get(pk=int(line))
        with CaptureQueriesContext(connection) as queries:
            allowed = user.has_perm({PERM!r})
        print(allowed, len(queries), flush=True)
    """
)


def test_a_revocation_in_one_process_is_seen_by_another(shared):
    """The other process answers from its cache (no query) until the revocation here, and
    right after it refuses: the invalidation crosses processes through Redis."""
    user = user_with("add_reservation", is_superuser=False)
    env = {
        "DJANGO_SETTINGS_MODULE": "stockpipe.settings",
        "DATABASE_URL": database_url(),
        "CACHE_URL": REDIS_CACHE["LOCATION"],
        "DEBUG": "false",
        "PYTHONPATH": str(ROOT),
        "PATH": "/usr/bin:/bin",
    }
    reader = subprocess.Popen(
        [sys.executable, "-c", READER],
        cwd=ROOT,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def ask() -> tuple[str, int]:
        reader.stdin.write(f"{user.pk}\n")
        reader.stdin.flush()
        allowed, queries = reader.stdout.readline().split()
        return allowed, int(queries)

    try:
        time.sleep(cache_guard.TOMBSTONE_TTL + 0.1)  # past the grant's tombstone (1 s here)
        # The first asks start a generation and fill the user's entry; then the answer
        # comes from the cache (a busy machine may void a fill that took too long: retry).
        answers = [ask() for _ in range(6)]
        assert ("True", 0) in answers, answers
        assert all(allowed == "True" for allowed, _ in answers), answers
        _direct(user)
        assert ask()[0] == "False"
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)
