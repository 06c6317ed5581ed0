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


def _wait_for_start() -> None:
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


ACTIONS = {f.__name__: f for f in (change_prices, drop_stock, create_low_product)}


def main() -> None:
    import django

    django.setup()
    action, *args = sys.argv[1:]
    _wait_for_start()
    ACTIONS[action](*args)


if __name__ == "__main__":
    main()
