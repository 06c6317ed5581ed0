"""Issue 14: a hold's expiry is a deferred sweep at its ``expires_at`` rounded up to the
second. A process enqueues one sweep per second of due time (not one per hold), only once
that sweep's task has committed; the sweep still expires every hold it serves; a hold's
save sends Django's signals although its INSERT bypasses the query compiler."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import transaction
from django.db.models import F
from django.db.models.signals import post_save, pre_save
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from app.models import Product, Reservation
from app.services import reservations

# Real commits: a sweep counts as scheduled only once its task row has committed.
pytestmark = pytest.mark.django_db(transaction=True)

SWEEP = "app.tasks.expire_reservations"


@pytest.fixture
def product(db):
    return Product.objects.create(sku="HOT-1", name="Hot", price="1.00", stock=10)


def sweeps() -> list:
    """The run times of the pending expiry sweeps."""
    pending = DBTaskResult.objects.filter(task_path=SWEEP, status="READY").order_by("run_after")
    return list(pending.values_list("run_after", flat=True))


def hold(product, quantity, expires_at):
    return reservations.reserve(product, quantity, user=None, expires_at=expires_at).reservation


def a_second_ahead(delta: timedelta):
    return (timezone.now() + delta).replace(microsecond=0) + timedelta(seconds=1)


@pytest.fixture
def late_race(product, monkeypatch):
    """The scene of a hold committed after its second's sweep ran: a first hold due in about
    three seconds with its sweep enqueued, and a second product for the late hold. Returns
    (that product, the due second, the first hold). The spare gap is shortened so being late
    takes seconds, not the minute and more a request may last under gunicorn's 120 s."""
    monkeypatch.setattr(reservations, "_SPARE_AHEAD", timedelta(seconds=2))
    other = Product.objects.create(sku="HOT-2", name="Hot 2", price="1.00", stock=10)
    due = a_second_ahead(timedelta(seconds=3))
    first = hold(product, 1, due - timedelta(milliseconds=100))
    assert sweeps() == [due]
    return other, due, first


def test_holds_due_in_one_second_share_one_sweep_and_it_expires_them(product, run_worker):
    due = a_second_ahead(timedelta(minutes=10))
    ms = timedelta(milliseconds=1)
    first = hold(product, 1, due - 700 * ms)
    second = hold(product, 2, due - 200 * ms)
    on_the_second = hold(product, 1, due)
    later = hold(product, 1, due + 500 * ms)
    assert sweeps() == [due, due + 1000 * ms]
    # Time passes: everything due 10 minutes earlier, so both sweeps are due now.
    shift = timedelta(minutes=10, seconds=2)
    Reservation.objects.update(expires_at=F("expires_at") - shift)
    DBTaskResult.objects.filter(task_path=SWEEP).update(run_after=F("run_after") - shift)
    run_worker()
    assert sweeps() == []
    for r in (first, second, on_the_second, later):
        r.refresh_from_db()
        assert r.status == "expired" and r.ended_at is not None
    product.refresh_from_db()
    assert (product.stock, product.reserved) == (10, 0)


def test_a_rolled_back_hold_spares_no_later_hold_its_sweep(product):
    due = a_second_ahead(timedelta(minutes=10))
    with pytest.raises(RuntimeError), transaction.atomic():
        hold(product, 1, due - timedelta(milliseconds=500))
        # The sweep's task row is written in the hold's transaction: they commit together,
        # so no crash can come between the hold's commit and its sweep's enqueue.
        assert sweeps() == [due]
        raise RuntimeError("the request fails after the hold")
    assert sweeps() == [] and not Reservation.objects.exists()
    kept = hold(product, 1, due - timedelta(milliseconds=300))
    assert sweeps() == [due]
    assert kept.expires_at <= due


def test_a_hold_close_to_due_commits_its_own_sweep(product):
    """A sweep less than a minute away is enqueued for every hold: a transaction that
    outlasts the time to the sweep cannot leave its hold to a sweep that already ran."""
    due = a_second_ahead(timedelta(seconds=30))
    hold(product, 1, due - timedelta(milliseconds=600))
    hold(product, 1, due - timedelta(milliseconds=100))
    assert sweeps() == [due, due]


def test_a_hold_sends_the_save_signals_django_sends(product):
    seen = []

    def before(sender, instance, **kwargs):
        seen.append(("pre", instance.pk, instance._state.adding, kwargs["update_fields"]))

    def after(sender, instance, created, **kwargs):
        stored = Reservation.objects.get(pk=instance.pk)  # in the database by now
        seen.append(("post", stored.pk, created, instance._state.adding, kwargs["using"]))

    pre_save.connect(before, sender=Reservation)
    post_save.connect(after, sender=Reservation)
    try:
        made = hold(product, 3, timezone.now() + timedelta(hours=1))
    finally:
        pre_save.disconnect(before, sender=Reservation)
        post_save.disconnect(after, sender=Reservation)
    assert seen == [("pre", None, True, None), ("post", made.pk, True, False, "default")]
    stored = Reservation.objects.get(pk=made.pk)
    for field in Reservation._meta.concrete_fields:
        assert getattr(stored, field.attname) == getattr(made, field.attname), field.name


@pytest.mark.postgres
def test_a_hold_that_waited_past_its_sweep_still_gets_one(late_race, run_worker):
    """A hold whose transaction waits (here on its product's row lock) until the sweep of its
    second has run must not be left to that sweep: whether another task is needed is decided
    when the hold is written, not when the request began."""
    import threading

    from django.db import connection

    other, due, first = late_race

    locked, release, made = threading.Event(), threading.Event(), []

    def locker():
        with transaction.atomic():
            Product.objects.select_for_update().get(pk=other.pk)
            locked.set()
            release.wait(30)
        connection.close()

    def late_hold():
        made.append(hold(other, 1, due - timedelta(milliseconds=50)))
        connection.close()

    threads = [threading.Thread(target=locker), threading.Thread(target=late_hold)]
    threads[0].start()
    assert locked.wait(10)
    threads[1].start()
    while timezone.now() <= due:  # the sweep's second comes while the hold waits
        threads[1].join(0.1)
    assert not made, "the hold should still be waiting for the row lock"
    run_worker()  # the sweep of that second runs: the waiting hold is not committed yet
    first.refresh_from_db()
    assert first.status == "expired"
    release.set()
    for t in threads:
        t.join(30)
    (late,) = made
    run_worker()  # whatever sweep the late hold left
    late.refresh_from_db()
    assert late.status == "expired", "a hold past due with no sweep task left to expire it"


def test_holds_sharing_a_sweep_still_expire_when_that_sweep_fails_once(product, run_worker):
    """Each hold used to have a task of its own, so a sweep that failed (a deadlock, a lost
    connection) was followed by the next hold's. A shared sweep that fails must leave a
    task that sweeps again, not only the minute's cron."""
    from app.signals import reservations_changed

    due = a_second_ahead(timedelta(minutes=10))
    first = hold(product, 1, due - timedelta(milliseconds=700))
    second = hold(product, 2, due - timedelta(milliseconds=200))
    failures = []

    def transient(sender, action, **kwargs):
        if action == "expired" and not failures:
            failures.append(action)
            raise RuntimeError("connection lost")

    shift = timedelta(minutes=10, seconds=2)
    Reservation.objects.update(expires_at=F("expires_at") - shift)
    DBTaskResult.objects.filter(task_path=SWEEP).update(run_after=F("run_after") - shift)
    reservations_changed.connect(transient)
    try:
        run_worker()
    finally:
        reservations_changed.disconnect(transient)
    assert failures == ["expired"]
    # Whatever sweep is left runs (its delay passed).
    DBTaskResult.objects.filter(task_path=SWEEP, status="READY").update(run_after=timezone.now())
    run_worker()
    for r in (first, second):
        r.refresh_from_db()
        assert r.status == "expired"


@pytest.mark.postgres
def test_a_hold_in_a_longer_transaction_committed_after_its_sweep_still_gets_one(
    late_race, run_worker
):
    """``reserve()`` inside a caller's transaction (a script reserving an order's lines in
    one ``atomic()``): the hold commits when the caller's transaction does, which may be
    after the sweep of its second has run. Sparing its task is only safe when the hold's
    own transaction is the one that commits (right after the hold is written)."""
    import threading

    from django.db import connection

    other, due, first = late_race

    written, commit, made = threading.Event(), threading.Event(), []

    def order():
        with transaction.atomic():  # the caller's transaction
            made.append(hold(other, 1, due - timedelta(milliseconds=50)))
            written.set()
            commit.wait(30)  # the caller's other work
        connection.close()

    thread = threading.Thread(target=order)
    thread.start()
    assert written.wait(10)
    while timezone.now() <= due:
        thread.join(0.1)
    run_worker()  # the sweep of that second: the caller's transaction has not committed
    first.refresh_from_db()
    assert first.status == "expired"
    commit.set()
    thread.join(30)
    (late,) = made
    run_worker()  # whatever sweep the late hold left
    late.refresh_from_db()
    assert late.status == "expired", "a hold past due with no sweep task left to expire it"
