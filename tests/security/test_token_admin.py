"""Finding 2 of issue 12: the token admin must not re-own or revive a token.

Driven through the real admin (test client, CSRF checks on) as a staff user holding only
the API-token admin permissions.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from app.models import ApiToken
from app.services.tokens import create_token, user_for_token
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

TOKEN_ADMIN_PERMS = ("view_apitoken", "change_apitoken", "delete_apitoken")


def _staff(*codenames: str):
    user = UserFactory(is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


@pytest.fixture
def boss(db):
    return UserFactory(is_staff=True, is_superuser=True, username="boss")


@pytest.fixture
def clerk(db):
    return _staff(*TOKEN_ADMIN_PERMS)


def _client(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def _change_url(token) -> str:
    return f"/admin/app/apitoken/{token.pk}/change/"


def test_owner_and_revocation_cannot_be_edited(clerk, boss):
    token, raw = create_token(clerk, "mine")
    token.revoked_at = timezone.now()
    token.save()
    response = _client(clerk).post(
        _change_url(token),
        {
            "name": "renamed",
            "user": boss.pk,
            "revoked_at_0": "",
            "revoked_at_1": "",
            "last_used_at_0": "",
            "last_used_at_1": "",
            "_save": "Save",
        },
    )
    assert response.status_code == 302, response.content
    token.refresh_from_db()
    assert token.name == "renamed"  # the one editable field
    assert token.user_id == clerk.pk
    assert token.revoked_at is not None
    assert user_for_token(raw) is None


def test_change_form_shows_owner_and_revocation_read_only(clerk):
    token, _ = create_token(clerk, "mine")
    form = _client(clerk).get(_change_url(token)).context["adminform"].form
    assert list(form.fields) == ["name"]


def test_revoke_action_revokes_own_tokens(clerk):
    token, raw = create_token(clerk, "mine")
    assert user_for_token(raw) == clerk
    response = _client(clerk).post(
        "/admin/app/apitoken/", {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    assert ApiToken.objects.get(pk=token.pk).revoked_at is not None
    assert user_for_token(raw) is None


def test_others_tokens_are_invisible_and_untouchable(clerk, boss):
    own, _ = create_token(clerk, "mine")
    theirs, their_raw = create_token(boss, "boss token")
    client = _client(clerk)
    listed = client.get("/admin/app/apitoken/").context["cl"].result_list
    assert [t.pk for t in listed] == [own.pk]
    # Another user's token: not found for the change page, the delete page and the action.
    assert client.get(_change_url(theirs)).status_code == 302  # "does not exist" redirect
    assert client.post(_change_url(theirs), {"name": "x", "_save": "Save"}).status_code == 302
    client.post(f"/admin/app/apitoken/{theirs.pk}/delete/", {"post": "yes"})
    client.post("/admin/app/apitoken/", {"action": "revoke", "_selected_action": [theirs.pk]})
    client.post(
        "/admin/app/apitoken/", {"action": "delete_selected", "_selected_action": [theirs.pk]}
    )
    theirs.refresh_from_db()
    assert (theirs.name, theirs.revoked_at) == ("boss token", None)
    assert user_for_token(their_raw) == boss


@pytest.mark.parametrize("privileged", ["superuser", "change_user"])
def test_user_managers_see_every_token(clerk, boss, privileged):
    manager = boss if privileged == "superuser" else _staff(*TOKEN_ADMIN_PERMS, "change_user")
    own, _ = create_token(clerk, "clerk's")
    other, _ = create_token(boss, "boss's")
    listed = _client(manager).get("/admin/app/apitoken/").context["cl"].result_list
    assert {t.pk for t in listed} == {own.pk, other.pk}
    _client(manager).post(
        "/admin/app/apitoken/", {"action": "revoke", "_selected_action": [own.pk]}
    )
    assert ApiToken.objects.get(pk=own.pk).revoked_at is not None
