"""The seed's layout contract and how receivers are wired."""

import importlib

from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

from app.models import PriceHistory, Product


def test_app_is_an_installed_package_with_the_seed_modules():
    assert "app" in settings.INSTALLED_APPS
    for module in ("app.views", "app.urls", "app.utils.utils", "app.models.models", "app.apps"):
        importlib.import_module(module)
    from app.models import Product as Exported

    assert Exported is importlib.import_module("app.models.models").Product
    assert {"name", "price", "stock"} <= {f.name for f in Product._meta.fields}
    assert {"product", "old_price", "new_price"} <= {f.name for f in PriceHistory._meta.fields}


def test_receivers_for_all_four_signals_are_connected_once_by_ready():
    config = apps.get_app_config("app")
    before = {sig: len(sig.receivers) for sig in (pre_save, post_save, pre_delete, post_delete)}
    config.ready()  # a second call must not connect anything twice (dispatch_uid)
    after = {sig: len(sig.receivers) for sig in (pre_save, post_save, pre_delete, post_delete)}
    assert before == after
    for signal in (pre_save, post_save, pre_delete, post_delete):
        assert signal.has_listeners(Product)
    assert post_save.has_listeners(get_user_model())
