"""Processes the reliability tests start: each acts on the shared test database.

Usage: python -m tests.reliability.actors <action> [args...]
Environment: DATABASE_URL (the test database), DJANGO_SETTINGS_MODULE=stockpipe.settings.
Every actor waits for START_AT (epoch seconds) so all processes hit the database together.
"""

from __future__ import annotations

import contextlib
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


def _http(method: str, url: str, token: str, payload: dict) -> int:
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


def soak_api(base_url: str, token: str, seconds: str, seed: str) -> None:
    """Random stock moves and price edits through the API until the time is up."""
    rng = random.Random(int(seed))
    deadline = time.monotonic() + float(seconds)
    statuses: dict[int, int] = {}
    while time.monotonic() < deadline:
        sku = f"SOAK-{rng.randrange(20):02d}"
        if rng.random() < 0.7:
            status = _http(
                "POST",
                f"{base_url}/api/products/{sku}/stock",
                token,
                {"delta": rng.choice([-5, -3, -1, 1, 2, 6]), "reason": "soak"},
            )
            assert status in (201, 409), status
        else:
            price = f"{rng.randint(100, 5000) / 100:.2f}"
            status = _http("PATCH", f"{base_url}/api/products/{sku}", token, {"price": price})
            assert status == 200, status
        statuses[status] = statuses.get(status, 0) + 1
    print(f"statuses={statuses}")


def soak_orm(seconds: str, seed: str) -> None:
    """Random saves, queryset updates and stock moves through the ORM and services."""
    from django.db.models import F

    from app.models import Product
    from app.services.stock import InsufficientStock, adjust_stock

    rng = random.Random(int(seed))
    deadline = time.monotonic() + float(seconds)
    while time.monotonic() < deadline:
        sku = f"SOAK-{rng.randrange(20):02d}"
        roll = rng.random()
        if roll < 0.4:
            product = Product.objects.get(sku=sku)
            product.price = Decimal(rng.randint(100, 5000)) / 100
            product.save()
        elif roll < 0.6:
            Product.objects.filter(sku=sku).update(price=F("price") + Decimal("0.10"))
        else:
            with contextlib.suppress(InsufficientStock):
                adjust_stock(sku, rng.choice([-4, -2, 3, 5]), user=None, reason="soak")


def soak_pipelines(seconds: str, seed: str) -> None:
    """Random pipelines; the ones that would drive stock negative must roll back whole."""
    from app.utils.utils import process_pipeline

    rng = random.Random(int(seed))
    deadline = time.monotonic() + float(seconds)
    outcomes: dict[str, int] = {}
    while time.monotonic() < deadline:
        skus = rng.sample([f"SOAK-{i:02d}" for i in range(20)], 5)
        steps = [
            {
                "op": "set_prices",
                "prices": {s: f"{rng.randint(100, 5000) / 100:.2f}" for s in skus[:2]},
            },
            {"op": "adjust_stock", "deltas": {s: rng.choice([-8, -3, 2, 9]) for s in skus}},
            {
                "op": "adjust_prices",
                "select": {"skus": skus[2:]},
                "percent": "-5",
                "round_to": "0.01",
            },
        ]
        result = process_pipeline({"name": "soak", "steps": steps})
        outcomes[result["status"]] = outcomes.get(result["status"], 0) + 1
    print(f"outcomes={outcomes}")


def machines_client(urls: str, token: str, seconds: str, seed: str, owned: str) -> None:
    """A client of several web machines (``urls``, comma-separated), each request to any of
    them: stock moves on every product, async pipelines (stock deltas, run by the workers),
    and price edits of the ``owned`` SKUs (no other actor edits their price), each read back
    from another machine at once: its answer, from that machine's cache, must be new."""
    import json
    import urllib.request

    machines = urls.split(",")
    rng = random.Random(int(seed))
    own = owned.split(",")
    deadline = time.monotonic() + float(seconds)
    counts: dict[str, int] = {}
    while time.monotonic() < deadline:
        sku = f"M-{rng.randrange(20):02d}"
        roll = rng.random()
        if roll < 0.6:
            status = _http(
                "POST",
                f"{rng.choice(machines)}/api/products/{sku}/stock",
                token,
                {"delta": rng.choice([-4, -3, -2, -1, 2, 3]), "reason": "machines"},
            )
            assert status in (201, 409), status
            kind = f"stock:{status}"
        elif roll < 0.8:
            deltas = {f"M-{i:02d}": rng.choice([-2, -1, 1, 3]) for i in rng.sample(range(20), 4)}
            spec = {
                "name": "machines",
                "mode": "async",
                "steps": [{"op": "adjust_stock", "deltas": deltas}],
            }
            status = _http("POST", f"{rng.choice(machines)}/api/pipelines/execute", token, spec)
            assert status == 202, status
            kind = "pipeline:202"
        else:
            sku = rng.choice(own)
            writer, reader = rng.sample(machines, 2)
            reader_url = f"{reader}/api/products/{sku}"
            # Read first, so the reader's caches hold the old body: the first read fills
            # Redis, later ones the near cache of the gunicorn worker that answers.
            request = urllib.request.Request(
                reader_url, headers={"Authorization": f"Bearer {token}"}
            )
            for _ in range(3):
                with urllib.request.urlopen(request, timeout=60) as response:
                    assert response.status == 200
            price = f"{rng.randint(100, 5000) / 100:.2f}"
            status = _http("PATCH", f"{writer}/api/products/{sku}", token, {"price": price})
            assert status == 200, status
            with urllib.request.urlopen(request, timeout=60) as response:
                seen = json.loads(response.read())["price"]
            assert seen == price, (sku, seen, price)
            kind = "price:200"
        counts[kind] = counts.get(kind, 0) + 1
    print(f"counts={json.dumps(counts)}")


def queue_pipeline(spec: str) -> None:
    """Queue an async pipeline on the process's task backend; print its run id."""
    import json

    from app.utils.utils import process_pipeline

    queued = process_pipeline(json.loads(spec))
    assert queued["status"] == "pending", queued
    print(f"run_id={queued['run_id']}")


def reserve_orm(sku: str, count: str, seed: str, tag: str) -> None:
    """Reserve 1-3 units ``count`` times through the service; print what was held.
    ``sku`` may list several SKUs (comma-separated): request ``i`` goes to the ``i``-th,
    round robin, so every process hits the same product at the same moment."""
    from django.contrib.auth import get_user_model

    from app.services.reservations import ReservationRefused, reserve

    rng = random.Random(int(seed))
    user = get_user_model().objects.get(username="worker")
    held, refused = [], 0
    for i in range(int(count)):
        quantity = rng.randint(1, 3)
        skus = sku.split(",")
        try:
            result = reserve(skus[i % len(skus)], quantity, user=user, idempotency_key=f"{tag}-{i}")
        except ReservationRefused:
            refused += 1
        else:
            held.append(f"{result.reservation.pk}:{quantity}")
    print(f"held={','.join(held)} refused={refused}")


def reserve_api(base_url: str, token: str, sku: str, count: str, seed: str, tag: str) -> None:
    """The same through the HTTP API: every answer must be 201 or a 409 refusal."""
    import json
    import urllib.error
    import urllib.request

    rng = random.Random(int(seed))
    held, refused = [], 0
    for i in range(int(count)):
        quantity = rng.randint(1, 3)
        skus = sku.split(",")
        body = {"sku": skus[i % len(skus)], "quantity": quantity, "idempotency_key": f"{tag}-{i}"}
        request = urllib.request.Request(
            f"{base_url}/api/reservations",
            data=json.dumps(body).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
            method="POST",
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                assert response.status == 201, response.status
                held.append(f"{json.loads(response.read())['id']}:{quantity}")
        except urllib.error.HTTPError as error:
            answer = error.read()
            assert error.code == 409, (error.code, answer)
            assert "available" in json.loads(answer), answer
            refused += 1
    print(f"held={','.join(held)} refused={refused}")


def transfer_orm(sku: str, source: str, target: str, count: str, seed: str) -> None:
    """Move 1-5 units ``count`` times; refusals (not enough at the source) are counted."""
    from app.services.stock import InsufficientStock, transfer_stock

    rng = random.Random(int(seed))
    moved = refused = 0
    for _ in range(int(count)):
        quantity = rng.randint(1, 5)
        try:
            transfer_stock(sku, source, target, quantity, user=None)
        except InsufficientStock:
            refused += 1
        else:
            moved += quantity
    print(f"moved={moved} refused={refused}")


def expire_sweep() -> None:
    from app.services.reservations import expire_due

    print(f"expired={expire_due(batch=50)}")


ACTIONS = {
    f.__name__: f
    for f in (
        queue_pipeline,
        machines_client,
        reserve_orm,
        reserve_api,
        transfer_orm,
        expire_sweep,
        change_prices,
        drop_stock,
        create_low_product,
        decrement_orm,
        decrement_api,
        soak_api,
        soak_orm,
        soak_pipelines,
    )
}


def main() -> None:
    import django

    django.setup()
    action, *args = sys.argv[1:]
    _wait_for_start()
    ACTIONS[action](*args)


if __name__ == "__main__":
    main()
