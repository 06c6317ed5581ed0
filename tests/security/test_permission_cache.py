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


def test_a_cached_denial_costs_no_query(shared, django_assert_num_queries):
    """The entry is the user's whole set: what it lacks is refused without ModelBackend's
    two queries (each page's navigation asks for permissions its user may lack)."""
    user = user_with("add_reservation", is_superuser=False)
    warm(user)
    again = fresh(user)
    with django_assert_num_queries(0):
        assert not again.has_perm("app.delete_product")
        assert not again.has_perms([PERM, "app.run_pipeline"])
        assert again.has_perm(PERM)


def test_without_a_shared_cache_modelbackend_answers(django_assert_num_queries):
    """No shared cache (development): the backend has no say; ModelBackend grants and
    refuses from the database, as before."""
    user = fresh(user_with("add_reservation", is_superuser=False))
    assert not cache_guard.enabled()
    with django_assert_num_queries(2):  # the user's and their groups' permissions, once
        assert user.has_perm(PERM)
        assert not user.has_perm("app.delete_product")


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


def test_a_grant_made_by_a_migration_is_seen_once_migrate_ends(shared):
    """A data migration grants through historical models (``apps.get_model``): Django sends
    their signals with the historical class as sender, which the receivers of the real
    through models never hear, and a ``RenameModel`` renames a content type the same way.
    ``migrate`` ends with ``post_migrate``: from then on, nobody is refused a permission
    the migration granted (``deploy/run`` migrates while the cache keeps the entries of
    the previous version's processes)."""
    from django.apps import apps as global_apps
    from django.core.management.sql import emit_post_migrate_signal
    from django.db.migrations.state import ProjectState

    user = user_with(is_superuser=False)
    group = Group.objects.create(name="operators")
    group.permissions.add(Permission.objects.get(codename="add_reservation"))
    user.groups.add(group)
    warm(user)
    assert not fresh(user).has_perm("app.run_pipeline")

    historical = ProjectState.from_apps(global_apps).apps  # what RunPython is given
    operators = historical.get_model("auth", "Group").objects.get(pk=group.pk)
    operators.permissions.add(
        historical.get_model("auth", "Permission").objects.get(codename="run_pipeline")
    )
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")

    assert fresh(user).has_perm("app.run_pipeline")


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


def _grant(user):
    user.user_permissions.add(Permission.objects.get(codename="add_reservation"))


@pytest.mark.parametrize(
    ("held", "change", "before"), [(("add_reservation",), _direct, "True"), ((), _grant, "False")]
)
def test_a_change_in_one_process_is_seen_by_another(shared, held, change, before):
    """The other process answers from its cache (no query) until the change here, and right
    after it answers the other way: the invalidation crosses processes through Redis (a
    grant as well: a cached entry refuses what it lacks, ModelBackend is not asked)."""
    user = user_with(*held, is_superuser=False)
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
        assert (before, 0) in answers, answers
        assert all(allowed == before for allowed, _ in answers), answers
        change(user)
        assert ask()[0] == str(before != "True")
    finally:
        reader.stdin.close()
        reader.wait(timeout=30)


def _demote_by_save(user) -> None:
    user = fresh(user)
    user.is_superuser = False
    user.save()


def _demote_by_update(user) -> None:  # no signal at all
    get_user_model().objects.filter(pk=user.pk).update(is_superuser=False)


@pytest.mark.parametrize("demote", [_demote_by_save, _demote_by_update])
def test_a_demoted_superuser_loses_every_permission_at_once(shared, client, demote):
    """``get_all_permissions`` (``/api/auth/me``, login) of a superuser lists every
    permission; kept in the cache, it would outlive the demotion."""
    from app.services.tokens import create_token

    user = user_with(is_superuser=True)
    _, raw = create_token(user, "t")
    time.sleep(cache_guard.TOMBSTONE_TTL + 0.1)
    for _ in range(2):
        assert PERM in fresh(user).get_all_permissions()
        me = client.get("/api/auth/me", headers={"Authorization": f"Bearer {raw}"})
        assert me.status_code == 200, me.content
    demote(user)
    assert not fresh(user).has_perm(PERM)
    assert PERM not in fresh(user).get_all_permissions()


DOWN = {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/11"}


def test_permission_changes_and_deactivation_commit_while_redis_is_down(caplog):
    """The invalidation fails (nothing listens on port 1): logged, and the change commits
    all the same; checks fall back to the database meanwhile."""
    from django.test import override_settings

    from app.services.tokens import create_token

    user = user_with("add_reservation", is_superuser=False)
    create_token(user, "t")
    group = Group.objects.create(name="clerks")
    with override_settings(CACHES={"default": DOWN}):
        assert cache_guard.enabled()
        with transaction.atomic():  # as the admin saves
            _direct(user)
            group.permissions.add(Permission.objects.get(codename="change_product"))
            user.groups.add(group)
        assert not fresh(user).has_perm(PERM)
        assert fresh(user).has_perm("app.change_product")
        with transaction.atomic():
            user = fresh(user)
            user.is_active = False
            user.save()
    assert not fresh(user).is_active
    assert not fresh(user).user_permissions.exists()
    assert any("could not invalidate" in r.getMessage() for r in caplog.records)


def test_the_fill_reads_the_primary_during_replica_reads(shared):
    """A request reading from the replica (``replica_reads``) still fills the cache from the
    primary: a lagging replica's permissions would be kept for ``MAX_AGE``."""
    from django.db import DEFAULT_DB_ALIAS, connections, router
    from django.test.utils import CaptureQueriesContext

    from app.core import dbrouter
    from app.services import permissions

    user = user_with(is_superuser=False)
    group = Group.objects.create(name="clerks")
    group.permissions.add(Permission.objects.get(codename="add_reservation"))
    user.groups.add(group)
    time.sleep(cache_guard.TOMBSTONE_TTL + 0.1)
    reader = fresh(user)
    token = dbrouter.current.set(dbrouter.Routing(replica=True))
    try:
        assert router.db_for_read(Permission) == dbrouter.REPLICA  # the real router's choice
        with (
            CaptureQueriesContext(connections[DEFAULT_DB_ALIAS]) as primary,
            CaptureQueriesContext(connections[dbrouter.REPLICA]) as replica,
        ):
            assert PERM in permissions.cached_permissions(reader)
    finally:
        dbrouter.current.reset(token)
    assert not any("auth_permission" in q["sql"] for q in replica.captured_queries)
    assert any("auth_permission" in q["sql"] for q in primary.captured_queries)


def test_the_fill_reads_the_database_not_the_instances_memo(shared):
    """``ModelBackend`` memoises a user's permissions on the instance; an instance that read
    them before a grant must not store that old set in the shared cache for ``MAX_AGE``
    (every other request would then be refused the grant)."""
    from django.contrib.auth.backends import ModelBackend

    from app.services import permissions

    user = user_with("add_reservation", is_superuser=False)
    held = fresh(user)
    assert "app.change_product" not in ModelBackend().get_all_permissions(held)  # memoised
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    time.sleep(cache_guard.TOMBSTONE_TTL + 0.1)  # past the grant's tombstone
    permissions.cached_permissions(held)  # starts a generation
    assert "app.change_product" in permissions.cached_permissions(held)  # stored
    assert fresh(user).has_perm("app.change_product")


def test_the_fill_of_a_lazy_deferred_instance_reads_the_database(shared):
    """``request.user`` is a ``SimpleLazyObject`` over an instance, which may have deferred
    fields: the fill copies what it wraps (not the wrapper, whose ``__dict__`` holds no
    memo) and the copy loads what it lacks, from the database, as the instance would."""
    from django.contrib.auth.backends import ModelBackend
    from django.utils.functional import SimpleLazyObject

    from app.services import permissions

    user = user_with("add_reservation", is_superuser=False)
    held = get_user_model().objects.only("pk").get(pk=user.pk)
    assert "app.change_product" not in ModelBackend().get_all_permissions(held)  # memoised
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    time.sleep(cache_guard.TOMBSTONE_TTL + 0.1)
    lazy = SimpleLazyObject(lambda: held)
    permissions.cached_permissions(lazy)  # starts a generation
    assert "app.change_product" in permissions.cached_permissions(lazy)  # stored
    assert "app.change_product" in permissions.cached_permissions(fresh(user))  # read back
