import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache

from app.services.tokens import create_token
from tests.api.conftest import ApiClient
from tests.factories import UserFactory

PERMS = ("add_product", "change_product", "delete_product", "run_pipeline", "view_product")


@pytest.fixture(autouse=True)
def _fresh_throttles():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def operator(db):
    """A non-superuser with the product and pipeline permissions (API, pages)."""
    user = UserFactory(username="operator")
    user.user_permissions.add(*Permission.objects.filter(codename__in=PERMS))
    return user


@pytest.fixture
def api(operator):
    _, raw = create_token(operator, "tests")
    return ApiClient(raw)


@pytest.fixture
def operator_client(client, operator):
    client.force_login(operator)
    return client
