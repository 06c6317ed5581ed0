"""Issue 14: the reservation counters. After any sequence of holds, commits, releases,
holds falling due, sweeps, stock moves and transfers, ``Product.reserved`` and
``StockLevel.reserved`` equal the units of the active holds (per product, per product and
location), and a hold is granted or refused exactly as the old definition of available
(on hand minus the active holds not yet due, summed) says, with that available in the
refusal."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import Sum
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.models import Location, Product, Reservation, StockLevel
from app.services import reservations
from app.services.stock import StockAdjustmentRefused, adjust_stock, availability, transfer_stock
from tests.conftest import hypothesis_examples

pytestmark = pytest.mark.django_db

SKUS = ("CNT-0", "CNT-1")
PLACES = (None, "MAIN", "CNT-A")

operation = st.one_of(
    st.tuples(
        st.just("reserve"),
        st.sampled_from(SKUS),
        st.integers(1, 6),
        st.sampled_from(PLACES),
    ),
    st.tuples(st.sampled_from(["commit", "release", "fall_due"]), st.integers(0, 30)),
    st.tuples(st.just("sweep")),
    st.tuples(
        st.just("adjust"),
        st.sampled_from(SKUS),
        st.integers(-8, 8).filter(bool),
        st.sampled_from(PLACES),
    ),
    st.tuples(st.just("transfer"), st.sampled_from(SKUS), st.integers(1, 6), st.booleans()),
)


def old_available(product: Product, location: Location | None) -> int:
    """Available before the counters: on hand minus the active holds not yet due (for a
    hold at a location: the least of the product's and the location's)."""
    product.refresh_from_db()
    free = product.stock - unexpired(product)
    if location is not None:
        free = min(free, old_available_at(product, location))
    return free


def old_available_at(product: Product, location: Location) -> int:
    level = StockLevel.objects.filter(product=product, location=location).first()
    return (level.quantity if level else 0) - unexpired(product, location)


def unexpired(product: Product, location: Location | None = None) -> int:
    holds = Reservation.objects.filter(
        product=product, status="active", expires_at__gt=timezone.now()
    )
    if location is not None:
        holds = holds.filter(location=location)
    return holds.aggregate(n=Sum("quantity"))["n"] or 0


def assert_counters_match_the_holds() -> None:
    active = Reservation.objects.filter(status="active")
    for product in Product.objects.all():
        held = active.filter(product=product).aggregate(n=Sum("quantity"))["n"] or 0
        assert product.reserved == held, product.sku
        for level in StockLevel.objects.filter(product=product).select_related("location"):
            there = active.filter(product=product, location_id=level.location_id)
            held = there.aggregate(n=Sum("quantity"))["n"] or 0
            assert level.reserved == held, (product.sku, level.location.code)
        # What the API reports is the old definition (never below zero).
        available, places = availability(product)
        assert available == max(old_available(product, None), 0)
        for place in places:
            location = Location.objects.get(code=place.code)
            assert place.available == max(old_available_at(product, location), 0)


def apply(op: tuple, now) -> None:
    kind = op[0]
    if kind == "reserve":
        _, sku, quantity, code = op
        product = Product.objects.get(sku=sku)
        location = Location.objects.get(code=code) if code else None
        free = old_available(product, location)
        try:
            reservations.reserve(sku, quantity, user=None, location=code)
        except reservations.ReservationRefused as refused:
            assert quantity > free, f"refused {quantity} with {free} available"
            assert refused.stock == max(free, 0)
        else:
            assert quantity <= free, f"granted {quantity} with {free} available"
        return
    if kind in ("commit", "release", "fall_due"):
        ids = list(Reservation.objects.order_by("pk").values_list("pk", flat=True))
        if not ids:
            return
        pk = ids[op[1] % len(ids)]
        if kind == "fall_due":  # time passes for this hold: due, not yet swept
            Reservation.objects.filter(pk=pk).update(expires_at=now - timedelta(seconds=1))
            return
        with contextlib.suppress(StockAdjustmentRefused):
            getattr(reservations, kind)(pk, user=None)
        return
    if kind == "sweep":
        reservations.expire_due()
        return
    if kind == "adjust":
        _, sku, delta, code = op
        with contextlib.suppress(StockAdjustmentRefused):
            adjust_stock(sku, delta, user=None, reason="count", location=code)
        return
    _, sku, quantity, outwards = op
    source, target = ("MAIN", "CNT-A") if outwards else ("CNT-A", "MAIN")
    with contextlib.suppress(StockAdjustmentRefused):
        transfer_stock(sku, source, target, quantity, user=None)


@settings(
    max_examples=hypothesis_examples(40),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=st.lists(operation, min_size=1, max_size=25))
def test_counters_equal_the_active_holds_after_any_sequence(db, operations):
    with transaction.atomic():
        Location.objects.create(code="CNT-A", name="A")
        for sku in SKUS:
            Product.objects.create(sku=sku, name="C", price="1.00", stock=6)
            adjust_stock(sku, 6, user=None, reason="in", location="CNT-A")
        now = timezone.now()
        for op in operations:
            apply(op, now)
            assert_counters_match_the_holds()
        transaction.set_rollback(True)


def test_a_hold_past_due_does_not_block_a_new_one_and_ends_expired(db):
    """The counter still holds a hold past due until the sweep: a hold that does not fit
    because of it expires it (as the sweep would, once) and is granted."""
    product = Product.objects.create(sku="CNT-DUE", name="C", price="1.00", stock=5)
    due = reservations.reserve(product, 4, user=None).reservation
    Reservation.objects.filter(pk=due.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    fresh = reservations.reserve(product, 5, user=None, location="MAIN").reservation
    due.refresh_from_db()
    product.refresh_from_db()
    assert due.status == "expired" and due.ended_at is not None
    assert product.reserved == 5
    assert StockLevel.objects.get(product=product).reserved == 5
    with pytest.raises(reservations.ReservationRefused) as refused:
        reservations.reserve(product, 1, user=None)
    assert refused.value.stock == 0
    assert reservations.expire_due() == 0  # nothing left to sweep: ended once
    reservations.release(fresh.pk, user=None)
    product.refresh_from_db()
    assert product.reserved == 0 and StockLevel.objects.get(product=product).reserved == 0


@pytest.mark.django_db
def test_a_save_never_writes_a_stale_held_count_back():
    """The counter is what keeps stock from being sold twice: an instance read before a
    hold, or built by hand for an existing row, must not put its own count back."""
    product = Product.objects.create(sku="SAVE-1", name="Lamp", price="1.00", stock=10)
    stale = Product.objects.get(pk=product.pk)
    reservations.reserve("SAVE-1", 3, user=None)
    stale.name = "Lamp, renamed"
    stale.save()
    assert Product.objects.get(pk=product.pk).reserved == 3
    by_hand = Product(
        pk=product.pk,
        sku="SAVE-1",
        name="Lamp again",
        price="2.00",
        stock=10,
        low_stock_threshold=5,
        created_at=product.created_at,
    )
    by_hand.save()
    saved = Product.objects.get(pk=product.pk)
    assert (saved.name, saved.reserved) == ("Lamp again", 3)
    with pytest.raises(reservations.ReservationRefused):
        reservations.reserve("SAVE-1", 8, user=None)  # 10 on hand, 3 held: 7 available


@pytest.mark.django_db
def test_a_deleted_product_saved_again_from_a_stale_instance_holds_nothing():
    """Its holds were detached when it was deleted (nothing releases them from the new
    row): the row written again must not carry their count (found by review)."""
    Product.objects.create(sku="GONE-1", name="Lamp", price="1.00", stock=10)
    reservations.reserve("GONE-1", 4, user=None)
    stale = Product.objects.get(sku="GONE-1")
    assert stale.reserved == 4
    Product.objects.filter(sku="GONE-1").delete()
    stale.save()
    assert Product.objects.get(sku="GONE-1").reserved == 0
    assert reservations.reserve("GONE-1", 10, user=None).reservation.quantity == 10


@pytest.mark.postgres  # row locks (SKIP LOCKED): SQLite locks the whole database
@pytest.mark.django_db(transaction=True)
def test_a_sweep_passes_over_reservations_locked_elsewhere_instead_of_spinning():
    """A batch whose rows another transaction holds is not re-read until the locks go: the
    sweep expires what it can and returns; the next sweep expires the rest."""
    import threading

    from django.db import connection, connections

    product = Product.objects.create(sku="CNT-LOCK", name="C", price="1.00", stock=10)
    held = [reservations.reserve(product, 1, user=None).reservation for _ in range(3)]
    Reservation.objects.filter(pk__in=[r.pk for r in held]).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    locked = sorted(r.pk for r in held)[:2]  # the first batch of 2 (oldest due first)
    taken, release = threading.Event(), threading.Event()

    def hold_locks():
        other = connections.create_connection("default")
        try:
            with other.cursor() as cursor:
                cursor.execute("BEGIN")
                cursor.execute(
                    "SELECT id FROM app_reservation WHERE id = ANY(%s) FOR UPDATE", [locked]
                )
                taken.set()
                release.wait(30)
                cursor.execute("ROLLBACK")
        finally:
            other.close()

    holder = threading.Thread(target=hold_locks)
    holder.start()
    try:
        assert taken.wait(10)
        result: list[int] = []

        def run_sweep():
            try:
                result.append(reservations.expire_due(batch=2))
            finally:
                connection.close()  # this thread's connection

        sweep = threading.Thread(target=run_sweep)
        sweep.start()
        sweep.join(10)
        assert not sweep.is_alive(), "the sweep waited for the locks instead of moving on"
        assert result == [1]
        statuses = dict(Reservation.objects.values_list("pk", "status"))
        assert [statuses[pk] for pk in locked] == ["active", "active"]
    finally:
        release.set()
        holder.join(30)
    assert reservations.expire_due(batch=2) == 2  # the next sweep, locks gone
    product.refresh_from_db()
    assert product.reserved == 0


def test_recount_reports_drift_and_fixes_it_only_when_asked(db):
    import io

    from django.core.management import CommandError, call_command

    Location.objects.create(code="RC-B", name="B")
    drifting = Product.objects.create(sku="RC-1", name="C", price="1.00", stock=10)
    adjust_stock("RC-1", 5, user=None, reason="in", location="RC-B")
    exact = Product.objects.create(sku="RC-2", name="C", price="1.00", stock=10)
    reservations.reserve(drifting, 3, user=None)
    reservations.reserve(drifting, 2, user=None, location="RC-B")
    reservations.reserve(exact, 4, user=None)
    Product.objects.filter(pk=drifting.pk).update(reserved=9)  # holds say 5
    StockLevel.objects.filter(product=drifting, location__code="RC-B").update(reserved=0)

    out = io.StringIO()
    with pytest.raises(CommandError, match="2 counter"):
        call_command("recount_reservations", stdout=out)
    assert out.getvalue().splitlines() == [
        "RC-1: counter 9, active holds 5",
        "RC-1 at RC-B: counter 0, active holds 2",
    ]
    drifting.refresh_from_db()
    assert drifting.reserved == 9  # a dry run changes nothing

    out = io.StringIO()
    call_command("recount_reservations", "--fix", stdout=out)
    assert out.getvalue().splitlines()[-1] == "2 counter(s) corrected."
    drifting.refresh_from_db()
    assert drifting.reserved == 5
    assert StockLevel.objects.get(product=drifting, location__code="RC-B").reserved == 2
    assert Product.objects.get(pk=exact.pk).reserved == 4
    assert_counters_match_the_holds()

    out = io.StringIO()
    call_command("recount_reservations", stdout=out)
    assert out.getvalue().strip() == "All reservation counters match their active holds."
