import pytest
from django.contrib.auth.models import Permission

from tests.factories import UserFactory


@pytest.fixture
def user(db):
    return UserFactory(username="clerk")


@pytest.fixture
def operator(db):
    """A user allowed to run pipelines."""
    user = UserFactory(username="operator")
    user.user_permissions.add(Permission.objects.get(codename="run_pipeline"))
    return user


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client
