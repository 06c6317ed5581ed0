import pytest
from django.contrib.auth.models import Permission

from tests.factories import UserFactory


@pytest.fixture
def operator(db):
    """A user allowed to run pipelines."""
    user = UserFactory()
    user.user_permissions.add(Permission.objects.get(codename="run_pipeline"))
    return user


EXAMPLE = {
    "name": "supplier feed 2026-11-24",
    "dry_run": False,
    "mode": "sync",
    "steps": [
        {
            "op": "upsert_products",
            "rows": [{"sku": "LAP-1", "name": "Laptop", "price": "999.00", "stock": 10}],
        },
        {"op": "upsert_products", "csv": "sku,name,price,stock\nMOU-1,Mouse,19.90,40\n"},
        {"op": "set_prices", "prices": {"LAP-1": "899.00"}},
        {
            "op": "adjust_prices",
            "select": {"sku_prefix": "LAP-"},
            "percent": "-10",
            "round_to": "0.01",
        },
        {"op": "adjust_stock", "deltas": {"LAP-1": -7, "MOU-1": 5}},
        {"op": "set_stock", "stock": {"MOU-1": 3}},
        {"op": "delete_products", "skus": ["OLD-9"]},
    ],
}
