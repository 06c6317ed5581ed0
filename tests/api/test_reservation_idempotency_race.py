"""Two requests with one idempotency key at once (a client's retry while its first request
is still in flight): the second waits for the first, fails on the key's unique index and
answers with the first reservation, as a later retry would."""

from __future__ import annotations

import threading
import time

import pytest
from django.db import connection, transaction

from app.models import Product, Reservation
from app.services import reservations

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.postgres]


def waiting_on_a_lock() -> bool:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0] > 0


def test_a_concurrent_retry_without_expires_at_gets_the_first_reservation():
    product = Product.objects.create(sku="KEY-1", name="Key", price="1.00", stock=10)
    held, commit, results = threading.Event(), threading.Event(), {}

    def run(name, body):
        try:
            body()
        except Exception as exc:  # reported below, with the other request's outcome
            results[name] = exc
        finally:
            connection.close()

    def first():
        with transaction.atomic():  # the first request, not yet committed
            results["first"] = reservations.reserve(product, 3, user=None, idempotency_key="k")
            held.set()
            commit.wait(30)

    def retry():
        held.wait(30)
        results["retry"] = reservations.reserve(product, 3, user=None, idempotency_key="k")

    threads = [threading.Thread(target=run, args=(n, b)) for n, b in [("a", first), ("b", retry)]]
    for t in threads:
        t.start()
    assert held.wait(30)
    deadline = time.monotonic() + 30
    while not waiting_on_a_lock():  # the retry waits for the first request's row lock
        assert time.monotonic() < deadline
        time.sleep(0.02)
    commit.set()
    for t in threads:
        t.join(30)
    assert "a" not in results and "b" not in results, results
    assert results["retry"].replayed
    assert results["retry"].reservation.pk == results["first"].reservation.pk
    product.refresh_from_db()
    assert (product.reserved, Reservation.objects.count()) == (3, 1)
