"""Issue 14: reservations and transfers under concurrent processes on PostgreSQL."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import Sum
from django.utils import timezone

from app.models import (
    Location,
    Product,
    Reservation,
    StockLevel,
    StockMovement,
    WebhookDelivery,
    WebhookSubscription,
)
from app.services import reservations
from app.services.stock import transfer_stock
from app.services.tokens import create_token

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


@pytest.fixture
def api_token():
    user = User.objects.create_user("worker", "worker@example.com", "pw-for-tests-1")
    user.user_permissions.add(*Permission.objects.filter(codename__in=["add_reservation"]))
    return create_token(user, "reliability")[1]


def parse(output: str) -> tuple[dict[int, int], int]:
    """The actor's result line (its output also carries log lines, e.g. the alert opened)."""
    line = [line for line in output.splitlines() if line.startswith("held=")][-1]
    held_part, refused_part = line.strip().rsplit(" ", 1)
    held = held_part.removeprefix("held=")
    pairs = [item.split(":") for item in held.split(",") if item]
    return {int(pk): int(n) for pk, n in pairs}, int(refused_part.removeprefix("refused="))


def ledger_consistent(product: Product) -> None:
    product.refresh_from_db()
    levels = dict(StockLevel.objects.filter(product=product).values_list("location_id", "quantity"))
    assert sum(levels.values()) == product.stock
    assert all(n >= 0 for n in levels.values())
    by_location: Counter = Counter()
    for location_id, delta in StockMovement.objects.filter(product=product).values_list(
        "location_id", "delta"
    ):
        by_location[location_id] += delta
    assert {k: v for k, v in by_location.items() if v} == {k: v for k, v in levels.items() if v}


@pytest.mark.slow
def test_eight_processes_never_reserve_more_than_is_available(processes, api_token):
    product = Product.objects.create(sku="HOT-R", name="Hot", price="1.00", stock=100)
    url = processes.web(workers=2)
    per_process = 500 // 8 + 1  # 504 requests in all
    calls = [
        ["reserve_api", url, api_token, "HOT-R", str(per_process), str(i), f"api{i}"]
        for i in range(4)
    ]
    calls += [["reserve_orm", "HOT-R", str(per_process), str(10 + i), f"orm{i}"] for i in range(4)]
    outputs = processes.actors(calls)
    held: dict[int, int] = {}
    refused = 0
    for output in outputs:
        got, n = parse(output)
        held.update(got)
        refused += n
    assert len(held) + refused == 8 * per_process
    active = Reservation.objects.filter(product=product, status="active")
    in_db = dict(active.values_list("pk", "quantity"))
    assert in_db == held  # every 201 is a hold, nothing held that was refused
    total = sum(held.values())
    assert total <= 100
    assert total >= 98  # 1-3 unit requests kept coming: the stock was taken up
    assert refused > 0

    # Commit half, release the rest: stock and ledger exact.
    ids = sorted(held)
    committed = ids[::2]
    for pk in ids:
        if pk in committed:
            reservations.commit(pk, user=None)
        else:
            reservations.release(pk, user=None)
    product.refresh_from_db()
    assert product.stock == 100 - sum(held[pk] for pk in committed)
    ledger = StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"]
    assert ledger == product.stock
    assert StockMovement.objects.filter(product=product, delta__lt=0).count() == len(committed)
    assert not Reservation.objects.filter(product=product, status="active").exists()
    ledger_consistent(product)


def test_many_products_at_their_limit_at_the_same_moment_never_oversell(processes):
    """The same race at 40 boundaries: every process asks for the same product at the same
    moment, each product with 4 units (a missing lock shows here within one run)."""
    User.objects.create_user("worker", "worker@example.com", "pw-for-tests-1")
    skus = [f"EDGE-{i:02d}" for i in range(40)]
    for sku in skus:
        Product.objects.create(sku=sku, name="Edge", price="1.00", stock=4)
    sku_list = ",".join(skus)
    calls = [["reserve_orm", sku_list, "120", str(i), f"edge{i}"] for i in range(8)]
    processes.actors(calls)
    held = Reservation.objects.filter(status="active").values("sku").annotate(n=Sum("quantity"))
    over = {row["sku"]: row["n"] for row in held if row["n"] > 4}
    assert not over, f"oversold: {over}"
    assert sum(row["n"] for row in held) >= 40 * 2


def test_concurrent_transfers_both_ways_keep_the_total_and_never_go_below_zero(processes):
    product = Product.objects.create(sku="MOVE-1", name="Move", price="1.00", stock=60)
    Location.objects.create(code="NORTH", name="North")
    transfer_stock(product, "MAIN", "NORTH", 30, user=None)
    calls = [["transfer_orm", "MOVE-1", "MAIN", "NORTH", "60", str(i)] for i in range(3)]
    calls += [["transfer_orm", "MOVE-1", "NORTH", "MAIN", "60", str(10 + i)] for i in range(3)]
    outputs = processes.actors(calls)
    refusals = sum(int(out.rsplit("refused=", 1)[1].split()[0]) for out in outputs)
    product.refresh_from_db()
    assert product.stock == 60
    ledger_consistent(product)
    rows = StockMovement.objects.filter(product=product).exclude(reason="initial stock")
    assert rows.count() == 2 * (1 + 6 * 60 - refusals)  # every transfer: two rows
    assert rows.aggregate(s=Sum("delta"))["s"] == 0


def test_two_expiry_sweeps_at_once_expire_each_reservation_once(processes):
    product = Product.objects.create(sku="EXP-1", name="Exp", price="1.00", stock=500)
    WebhookSubscription.objects.create(
        url="https://hooks.example.com/x", events=["reservation.expired"], secret="s" * 32
    )
    soon = timezone.now() + timedelta(hours=1)
    ids = [reservations.reserve(product, 1, user=None, expires_at=soon).reservation.pk]
    ids += [
        reservations.reserve(product, 1, user=None, expires_at=soon).reservation.pk
        for _ in range(299)
    ]
    Reservation.objects.filter(pk__in=ids).update(expires_at=timezone.now() - timedelta(seconds=1))
    outputs = processes.actors([["expire_sweep"], ["expire_sweep"]])
    counts = [int(out.rsplit("expired=", 1)[1].split()[0]) for out in outputs]
    assert sum(counts) == 300
    assert Reservation.objects.filter(status="expired").count() == 300
    events = Counter(
        WebhookDelivery.objects.filter(event_type="reservation.expired").values_list(
            "data__reservation__id", flat=True
        )
    )
    assert set(events) == set(ids) and set(events.values()) == {1}


def test_a_sweep_killed_mid_way_leaves_no_reservation_half_expired(processes):
    """The sweeper commits batch by batch: SIGKILLed after its first batch (its second
    batch, the second product's holds, waits for that product's row, which this test
    holds), the first batch is expired with its events and counters, the rest is untouched;
    the next sweep expires the rest, each reservation once."""
    import signal

    from django.db import connection, connections

    from tests.reliability.conftest import wait_until

    WebhookSubscription.objects.create(
        url="https://hooks.example.com/x", events=["reservation.expired"], secret="s" * 32
    )
    products = [
        Product.objects.create(sku=f"KILL-{i}", name="K", price="1.00", stock=100) for i in range(6)
    ]
    soon = timezone.now() + timedelta(hours=1)
    ids = [
        reservations.reserve(product, 1, user=None, expires_at=soon).reservation.pk
        for product in products
        for _ in range(50)
    ]
    Reservation.objects.filter(pk__in=ids).update(expires_at=timezone.now() - timedelta(seconds=1))
    locker = connections.create_connection("default")
    locker.set_autocommit(False)
    with locker.cursor() as cursor:
        cursor.execute("SELECT id FROM app_product WHERE id = %s FOR UPDATE", [products[1].pk])
    sweep = processes.start("-m", "tests.reliability.actors", "expire_sweep")
    with connection.cursor() as cursor:

        def waiting() -> bool:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid()"
            )
            return cursor.fetchone()[0] > 0

        wait_until(waiting, message="the sweep to wait for the product lock")
    sweep.send_signal(signal.SIGKILL)
    sweep.wait(30)
    locker.rollback()
    locker.close()

    expired = set(Reservation.objects.filter(status="expired").values_list("pk", flat=True))
    assert len(expired) == 50  # the first batch, whole
    assert set(Reservation.objects.filter(pk__in=expired).values_list("sku", flat=True)) == {
        "KILL-0"
    }
    assert dict(Product.objects.values_list("sku", "reserved")) == {
        "KILL-0": 0,
        **{f"KILL-{i}": 50 for i in range(1, 6)},
    }
    assert not Reservation.objects.filter(status="expired", ended_at__isnull=True).exists()
    assert not Reservation.objects.filter(status="active", ended_at__isnull=False).exists()
    events = Counter(
        WebhookDelivery.objects.filter(event_type="reservation.expired").values_list(
            "data__reservation__id", flat=True
        )
    )
    assert set(events) == expired and set(events.values()) == {1}

    assert reservations.expire_due() == 250
    events = Counter(
        WebhookDelivery.objects.filter(event_type="reservation.expired").values_list(
            "data__reservation__id", flat=True
        )
    )
    assert set(events) == set(ids) and set(events.values()) == {1}
    assert set(Product.objects.values_list("reserved", flat=True)) == {0}
