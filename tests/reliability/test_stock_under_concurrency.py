"""Stock under concurrent writers and a dropped database connection."""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection, connections
from django.db.models import Sum

from app.models import Product, StockMovement
from app.services.tokens import create_token
from tests.factories import ProductFactory
from tests.reliability.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def api_token():
    user = User.objects.create_user("worker", "worker@example.com", "pw-for-tests-1")
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    return create_token(user, "reliability")[1]


def test_eight_processes_decrementing_one_product_lose_nothing(processes, api_token):
    start, per_process = 3000, 500
    ProductFactory(sku="HOT-1", stock=start)
    url = processes.web(workers=2)
    calls = [
        ["decrement_api", url, api_token, "HOT-1", str(per_process), f"api{i}"] for i in range(4)
    ]
    calls += [["decrement_orm", "HOT-1", str(per_process), f"orm{i}"] for i in range(4)]
    outputs = processes.actors(calls)
    refused = sum(int(out.strip().rsplit("refused=", 1)[1]) for out in outputs)
    product = Product.objects.get(sku="HOT-1")
    applied = StockMovement.objects.filter(sku="HOT-1", delta=-1).count()
    assert product.stock == 0  # 4,000 attempts on 3,000 units
    assert applied == start
    assert refused == 8 * per_process - start
    assert StockMovement.objects.filter(sku="HOT-1").aggregate(s=Sum("delta"))["s"] == product.stock
    assert StockMovement.objects.filter(sku="HOT-1", stock_after__lt=0).count() == 0


def post_json(url: str, token: str, payload: dict) -> tuple[int, dict]:
    request = urllib.request.Request(
        url,
        data=json.dumps(payload).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_connection_terminated_mid_request_fails_cleanly(processes, api_token):
    ProductFactory(sku="T-1", stock=10)
    url = processes.web(workers=1)
    # Hold the product's row lock from another connection so the request waits inside its
    # transaction; then kill the request's database backend while it waits.
    locker = connections.create_connection("default")
    locker.set_autocommit(False)
    with locker.cursor() as cursor:
        cursor.execute("SELECT id FROM app_product WHERE sku = 'T-1' FOR UPDATE")
    result: dict = {}
    thread = threading.Thread(
        target=lambda: result.update(
            answer=post_json(
                f"{url}/api/products/T-1/stock", api_token, {"delta": -3, "reason": "x"}
            )
        )
    )
    thread.start()
    with connection.cursor() as cursor:

        def waiting_backend() -> int | None:
            cursor.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            row = cursor.fetchone()
            return row[0] if row else None

        wait_until(lambda: waiting_backend() is not None, message="the request to wait on the lock")
        cursor.execute("SELECT pg_terminate_backend(%s)", [waiting_backend()])
    thread.join(60)
    locker.rollback()
    locker.close()
    status, body = result["answer"]
    assert status == 500 and set(body) == {"detail", "errors"}
    product = Product.objects.get(sku="T-1")
    assert product.stock == 10
    assert StockMovement.objects.filter(sku="T-1").count() == 1  # the initial stock only
    time.sleep(0.2)
    status, body = post_json(
        f"{url}/api/products/T-1/stock", api_token, {"delta": -3, "reason": "y"}
    )
    assert status == 201, body
    assert Product.objects.get(sku="T-1").stock == 7
    assert StockMovement.objects.filter(sku="T-1").aggregate(s=Sum("delta"))["s"] == 7
