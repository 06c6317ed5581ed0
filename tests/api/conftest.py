import pytest
from django.contrib.auth.models import Permission
from django.core.cache import cache
from django.test import Client

from app.services.tokens import create_token
from tests.factories import ProductFactory, UserFactory

ALL_PERMS = (
    "add_reservation",
    "change_reservation",
    "add_product",
    "change_product",
    "delete_product",
    "run_pipeline",
    "add_location",
    "change_location",
)


@pytest.fixture(autouse=True)
def _fresh_throttles():
    """Throttle counters live in the cache; each test starts with none."""
    cache.clear()
    yield
    cache.clear()


def user_with(*codenames: str, **kwargs):
    user = UserFactory(**kwargs)
    if codenames:
        user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    return user


class ApiClient:
    """Django's test client with a bearer token on every request."""

    def __init__(self, token: str | None) -> None:
        self.client = Client()
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def get(self, path, data=None, **headers):
        return self.client.get(path, data, headers={**self.headers, **headers})

    def post(self, path, data=None, **headers):
        return self.client.post(
            path, data, content_type="application/json", headers={**self.headers, **headers}
        )

    def patch(self, path, data=None, **headers):
        return self.client.patch(
            path, data, content_type="application/json", headers={**self.headers, **headers}
        )

    def delete(self, path, **headers):
        return self.client.delete(path, headers={**self.headers, **headers})


@pytest.fixture
def writer(db):
    return user_with(*ALL_PERMS)


@pytest.fixture
def reader(db):
    return user_with()


@pytest.fixture
def api(writer):
    """A client authenticated with a real token of a user holding all API permissions."""
    _, raw = create_token(writer, "tests")
    return ApiClient(raw)


@pytest.fixture
def reader_api(reader):
    _, raw = create_token(reader, "tests")
    return ApiClient(raw)


@pytest.fixture
def anon():
    return ApiClient(None)


@pytest.fixture
def product(db):
    return ProductFactory(sku="WIDGET-1", name="Blue widget", stock=10)


def assert_error_shape(response, status):
    assert response.status_code == status, response.content
    assert response["Content-Type"].startswith("application/json")
    body = response.json()
    assert isinstance(body["detail"], str) and body["detail"]
    assert isinstance(body["errors"], list)
    for item in body["errors"]:
        assert isinstance(item["loc"], list) and isinstance(item["msg"], str)
    return body
