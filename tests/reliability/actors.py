"""Processes the reliability tests start: each acts on the shared test database.

Usage: python -m tests.reliability.actors <action> [args...]
Environment: DATABASE_URL (the test database), DJANGO_SETTINGS_MODULE=stockpipe.settings.
Every actor waits for START_AT (epoch seconds) so all processes hit the database together.
"""

from __future__ import annotations

import os
import random
import sys
import time
from decimal import Decimal


def _wait_for_start() -> None:  # all actors of a test start at the same instant
    start_at = float(os.environ.get("START_AT", "0"))
    delay = start_at - time.time()
    if delay > 0:
        time.sleep(delay)


def change_prices(sku: str, count: str, seed: str) -> None:
    from app.models import Product

    rng = random.Random(int(seed))
    for _ in range(int(count)):
        product = Product.objects.get(sku=sku)
        product.price = Decimal(rng.randint(100, 99999)) / 100
        product.save()


def drop_stock(sku: str) -> None:
    from django.db.models import F

    from app.models import Product

    Product.objects.filter(sku=sku).update(stock=F("stock") - 1)


def create_low_product(sku: str) -> None:
    from app.models import Product

    Product.objects.create(sku=sku, name=f"Product {sku}", price=Decimal("5.00"), stock=1)


def decrement_orm(sku: str, count: str, tag: str) -> None:
    """Decrement through the stock service; refusals are counted, never raised."""
    from django.contrib.auth import get_user_model

    from app.services.stock import InsufficientStock, adjust_stock

    user = get_user_model().objects.get(username="worker")
    refused = 0
    for i in range(int(count)):
        try:
            adjust_stock(sku, -1, user=user, reason="orm", idempotency_key=f"{tag}-{i}")
        except InsufficientStock:
            refused += 1
    print(f"refused={refused}")


def decrement_api(base_url: str, token: str, sku: str, count: str, tag: str) -> None:
    """Decrement through the HTTP API; every answer must be 201 or a 409 refusal."""
    import json
    import urllib.error
    import urllib.request

    refused = 0
    for i in range(int(count)):
        body = json.dumps({"delta": -1, "reason": "api", "idempotency_key": f"{tag}-{i}"}).encode()
        request = urllib.request.Request(
            f"{base_url}/api/products/{sku}/stock",
            data=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 201, response.status
        except urllib.error.HTTPError as error:
            assert error.code == 409, (error.code, error.read())
            refused += 1
    print(f"refused={refused}")


ACTIONS = {
    f.__name__: f
    for f in (change_prices, drop_stock, create_low_product, decrement_orm, decrement_api)
}


def main() -> None:
    import django

    django.setup()
    action, *args = sys.argv[1:]
    _wait_for_start()
    ACTIONS[action](*args)


if __name__ == "__main__":
    main()
