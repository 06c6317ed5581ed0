"""``manage.py partition_tables`` on a populated PostgreSQL database: the same rows, ids and
answers after the conversion, new rows in the right partitions, the rules the plain tables
kept (a unique idempotency key, attempts that need their delivery) still kept, retention and
the whole change flow working, and later schema changes still applying."""

from __future__ import annotations

import io
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, models, transaction
from django.db.models import Count, Sum
from django.test import Client
from django.utils import timezone

from app.models import (
    Location,
    PriceHistory,
    Product,
    StockMovement,
    WebhookDelivery,
)
from app.models.webhooks import WebhookAttempt
from app.services import omnibus, partitioning
from app.services.retention import RetentionPolicy, prune
from app.services.stock import adjust_stock, transfer_stock
from app.services.tokens import create_token
from app.utils.utils import process_pipeline
from app.webhooks import outbox, services
from tests.conftest import partitioned_run
from tests.factories import ProductFactory, UserFactory
from tests.webhooks.conftest import SECRET
from tests.webhooks.receiver import WebhookReceiver

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

MODELS = (PriceHistory, StockMovement, WebhookDelivery)
NOW = timezone.now()


def days_ago(days: float) -> datetime:
    return NOW - timedelta(days=days)


def restore_plain_tables() -> None:
    """The three tables (and the attempts pointing at one) as ``migrate`` makes them."""
    with connection.cursor() as cursor:
        for model in (WebhookAttempt, *MODELS):
            cursor.execute(f'DROP TABLE IF EXISTS "{model._meta.db_table}" CASCADE')
        cursor.execute('DROP TABLE IF EXISTS "app_stockmovement_idempotency_key_uniq"')
    with connection.schema_editor() as editor:
        for model in (*MODELS, WebhookAttempt):
            editor.create_model(model)


@pytest.fixture(autouse=True)
def plain_tables(request):
    """Each test starts from plain tables; afterwards the session's state comes back."""
    if any(partitioning.is_partitioned(model._meta.db_table) for model in MODELS):
        restore_plain_tables()
    outbox.forget_subscriptions()
    yield
    outbox.forget_subscriptions()
    restore_plain_tables()
    if partitioned_run(request.config):
        call_command("partition_tables", apply=True, ahead=3, verbosity=0)


@pytest.fixture
def receiver():
    server = WebhookReceiver(secret=SECRET)
    server.start()
    yield server
    server.stop()


def set_price(product: Product, price: str) -> None:
    product.price = Decimal(price)
    product.save()


def backdate(model, pks_and_times, column: str) -> None:
    for pk, at in pks_and_times:
        model.objects.filter(pk=pk).update(**{column: at})


def populate(receiver) -> dict:
    """History, ledger and outbox rows over four months; an Omnibus window across the
    November/December boundary."""
    user = UserFactory(username="clerk")
    services.create_subscription(url=receiver.url, events=["price.changed"], secret=SECRET)
    Location.objects.create(code="NORTH", name="North")
    omni = ProductFactory(sku="OMNI-1", price=Decimal("100.00"), stock=40)
    for price in ("130.00", "95.00", "140.00", "80.00"):
        set_price(omni, price)
    # 100 -> 130 95 days ago, -> 95 on the 25th day before, -> 140 12 days ago, -> 80 3
    # days ago: a reduction whose 30-day window reaches back across a month boundary.
    rows = PriceHistory.objects.filter(product=omni).order_by("id")
    backdate(PriceHistory, zip(rows.values_list("pk", flat=True), map(days_ago, (95, 25, 12, 3)), strict=True), "changed_at")  # fmt: skip
    other = ProductFactory(sku="PLAIN-1", price=Decimal("10.00"), stock=5)
    Product.objects.update(created_at=days_ago(200))  # price-at answers for the past
    for price in ("11.00", "12.00", "9.00"):
        set_price(other, price)
    rows = PriceHistory.objects.filter(product=other).order_by("id")
    backdate(PriceHistory, zip(rows.values_list("pk", flat=True), map(days_ago, (120, 61, 33)), strict=True), "changed_at")  # fmt: skip

    moves = []
    for n, (delta, age) in enumerate(((5, 100), (-3, 70), (7, 45), (-2, 20), (4, 2))):
        done = adjust_stock(omni, delta, user=user, reason="count", idempotency_key=f"k-{n}")
        moves.append((done.movement.pk, days_ago(age)))
    transfer = transfer_stock(omni, "MAIN", "NORTH", 6, user=user, idempotency_key="t-1")
    moves += [(m.pk, days_ago(50)) for m in transfer.movements]
    backdate(StockMovement, moves, "created_at")

    deliveries = list(WebhookDelivery.objects.order_by("id"))
    for delivery, age in zip(deliveries, (95, 61, 40, 33, 25, 12, 3, 1, 0), strict=False):
        status = WebhookDelivery.Status.DELIVERED if age >= 12 else WebhookDelivery.Status.PENDING
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            created_at=days_ago(age),
            status=status,
            delivered_at=days_ago(age - 0.5) if status == "delivered" else None,
        )
        if status == "delivered":
            WebhookAttempt.objects.create(
                delivery=delivery, number=1, attempted_at=days_ago(age), status_code=200
            )
    return {"omni": omni, "other": other, "user": user}


def snapshot(client: Client, headers: dict) -> dict:
    """Every row (ids included) and the answers the API and the Omnibus rules give."""
    rows = {
        model.__name__: list(model.objects.order_by("id").values_list())
        for model in (*MODELS, WebhookAttempt)
    }
    answers = {}
    for sku in ("OMNI-1", "PLAIN-1"):
        answers[sku] = [
            client.get(f"/api/products/{sku}", **headers).json(),
            client.get(f"/api/products/{sku}/price-history", **headers).json(),
            client.get(f"/api/products/{sku}/stock-movements", **headers).json(),
        ]
        for age in (0, 2, 4, 11, 24, 40, 62, 100):
            at = days_ago(age).isoformat()
            answers[sku].append(
                client.get(f"/api/products/{sku}/price-at", {"at": at}, **headers).json()
            )
            answers[sku].append(
                omnibus.current_reduction(Product.objects.get(sku=sku), days_ago(age))
            )
    answers["deliveries"] = client.get(
        "/api/webhooks/deliveries", {"page_size": 100}, **headers
    ).json()
    sums = {
        "ledger": StockMovement.objects.aggregate(n=Count("id"), d=Sum("delta"), s=Sum("id")),
        "history": PriceHistory.objects.aggregate(n=Count("id"), p=Sum("new_price"), s=Sum("id")),
        "outbox": WebhookDelivery.objects.aggregate(n=Count("id"), a=Sum("attempts"), s=Sum("id")),
    }
    return {"rows": rows, "answers": answers, "sums": sums}


def index_definitions(table: str) -> dict[str, str]:
    """Index name -> its columns (and UNIQUE), from the catalog."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s", [table])
        return {
            name: ("UNIQUE " if " UNIQUE " in definition else "")
            + definition.split(" USING btree ")[1]
            for name, definition in cursor.fetchall()
        }


def where(model, pk) -> str:
    """The partition holding row ``pk`` (``tableoid``)."""
    with connection.cursor() as cursor:
        cursor.execute(
            f'SELECT tableoid::regclass::text FROM "{model._meta.db_table}" WHERE id = %s', [pk]
        )
        return cursor.fetchone()[0]


def api_headers(user) -> dict:
    user.is_superuser = True
    user.save()
    return {"HTTP_AUTHORIZATION": f"Bearer {create_token(user, 't')[1]}"}


def test_conversion_keeps_rows_ids_and_answers(receiver):
    data = populate(receiver)
    headers = api_headers(data["user"])
    client = Client()
    before = snapshot(client, headers)
    assert before["answers"]["OMNI-1"][0]["prior_price"] == "95.00"  # the window spans November
    plan = io.StringIO()
    call_command("partition_tables", stdout=plan)
    assert "Dry run: nothing changed." in plan.getvalue()
    assert not any(partitioning.is_partitioned(m._meta.db_table) for m in MODELS)

    indexes = {model: index_definitions(model._meta.db_table) for model in MODELS}
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())

    for model in MODELS:
        table = model._meta.db_table
        assert partitioning.is_partitioned(table)
        # The same indexes under the same names (a later migration finds them); the
        # primary key now with the time, a unique key without it kept by its side table.
        old, new = indexes[model], index_definitions(table)
        key = "changed_at" if model is PriceHistory else "created_at"
        assert new.pop(f"{table}_pkey") == f"UNIQUE (id, {key})"
        assert old.pop(f"{table}_pkey") == "UNIQUE (id)"
        assert {n: d for n, d in old.items() if "UNIQUE" not in d} == new
        # The old table's indexes were attached, none built again.
        assert len(index_definitions(f"{table}_legacy")) == len(old) + 1
        names = [name for name, *_ in partitioning.partitions(table)]
        assert names[0] == f"{table}_legacy" and names[-1] == f"{table}_default"
        months = partitioning.missing_months(partitioning.selected()[0], NOW, 0)
        assert months == []  # this month is held (by the old table's partition)
    after = snapshot(client, headers)
    assert after == before
    # The old rows stayed where they were: the old table is the first partition.
    assert where(PriceHistory, before["rows"]["PriceHistory"][0][0]) == "app_pricehistory_legacy"


def test_new_rows_land_in_their_month_and_ids_continue(receiver, monkeypatch, run_worker):
    data = populate(receiver)
    top = {m: m.objects.order_by("-id").values_list("id", flat=True).first() for m in MODELS}
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    omni = Product.objects.get(sku="OMNI-1")
    set_price(omni, "85.00")  # now: the old table's range, which runs to the next month
    newest = PriceHistory.objects.latest("id")
    assert newest.pk > top[PriceHistory]
    assert where(PriceHistory, newest.pk) == "app_pricehistory_legacy"

    # Two months on (time as the application sees it): the month's own partitions.
    later = partitioning.add_months(partitioning.month_start(NOW), 2) + timedelta(days=3)
    monkeypatch.setattr(timezone, "now", lambda: later)
    month = f"p{later:%Y_%m}"
    set_price(omni, "70.00")
    adjust_stock(omni, -1, user=data["user"], reason="sale", idempotency_key="k-late")
    moved = StockMovement.objects.get(idempotency_key="k-late")
    assert where(PriceHistory, PriceHistory.objects.latest("id").pk) == f"app_pricehistory_{month}"
    assert where(StockMovement, moved.pk) == f"app_stockmovement_{month}"
    event = WebhookDelivery.objects.latest("id")
    assert event.pk > top[WebhookDelivery]
    assert where(WebhookDelivery, event.pk) == f"app_webhookdelivery_{month}"

    # Beyond the months created ahead: the default partition, nothing fails.
    far = later + timedelta(days=400)
    monkeypatch.setattr(timezone, "now", lambda: far)
    set_price(omni, "72.00")
    assert where(PriceHistory, PriceHistory.objects.latest("id").pk) == "app_pricehistory_default"
    monkeypatch.undo()
    # The ledger still sums to the stock, per product and per location.
    omni.refresh_from_db()
    assert StockMovement.objects.filter(product=omni).aggregate(s=Sum("delta"))["s"] == omni.stock


def test_partitions_ahead_are_idempotent_and_take_back_default_rows(receiver):
    populate(receiver)
    call_command("partition_tables", apply=True, ahead=1, stdout=io.StringIO())
    spec = partitioning.selected(("ledger",))[0]
    # A row dated in the sixth month from now lands in the default partition.
    sixth = partitioning.add_months(partitioning.month_start(NOW), 6) + timedelta(days=2)
    row = StockMovement.objects.create(
        product=Product.objects.get(sku="OMNI-1"), location=Location.objects.get(code="MAIN"),
        sku="OMNI-1", delta=0, stock_after=0, idempotency_key="k-future", created_at=sixth,
    )  # fmt: skip
    assert where(StockMovement, row.pk) == "app_stockmovement_default"
    out = io.StringIO()
    call_command("partition_tables", ahead=6, stdout=out)
    created = out.getvalue().split()
    assert f"app_stockmovement_p{sixth:%Y_%m}" in created
    assert where(StockMovement, row.pk) == f"app_stockmovement_p{sixth:%Y_%m}"
    assert StockMovement.objects.get(idempotency_key="k-future").pk == row.pk
    again = io.StringIO()
    call_command("partition_tables", ahead=6, stdout=again)
    assert again.getvalue() == ""  # cron-safe: nothing more to create
    assert partitioning.missing_months(spec, NOW, 6) == []
    # Its key still guards against a second row with it.
    with pytest.raises(IntegrityError), transaction.atomic():
        StockMovement.objects.create(
            product=row.product, location=row.location, sku="OMNI-1", delta=0, stock_after=0,
            idempotency_key="k-future", created_at=NOW,
        )  # fmt: skip


def test_idempotency_keys_and_attempt_links_still_hold(receiver):
    data = populate(receiver)
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    omni = Product.objects.get(sku="OMNI-1")
    stock = omni.stock
    # A key from before the conversion (its row in the old table's partition) replays.
    replay = adjust_stock(omni, 5, user=data["user"], reason="count", idempotency_key="k-0")
    assert replay.replayed
    omni.refresh_from_db()
    assert omni.stock == stock
    # Any second row with a used key is refused, whatever partition it would go to.
    for at in (NOW, NOW + timedelta(days=70), NOW + timedelta(days=4000)):
        with pytest.raises(IntegrityError), transaction.atomic():
            StockMovement.objects.create(
                product=omni, location=Location.objects.get(code="MAIN"), sku="OMNI-1",
                delta=1, stock_after=1, idempotency_key="k-2", created_at=at,
            )  # fmt: skip
    # A pruned (deleted) row's key is free again; so is a key whose row changed its key.
    StockMovement.objects.filter(idempotency_key="k-1").delete()
    StockMovement.objects.filter(idempotency_key="k-3").update(idempotency_key="k-3b")
    for key in ("k-1", "k-3"):
        StockMovement.objects.create(
            product=omni, location=Location.objects.get(code="MAIN"), sku="OMNI-1",
            delta=0, stock_after=stock, idempotency_key=key, created_at=NOW,
        )  # fmt: skip
    with pytest.raises(IntegrityError), transaction.atomic():
        StockMovement.objects.filter(idempotency_key="k-4").update(idempotency_key="k-3b")

    # An attempt needs its delivery; a delivery with attempts cannot go behind their back.
    with pytest.raises(IntegrityError), transaction.atomic():
        WebhookAttempt.objects.create(delivery_id=10**9, number=1, attempted_at=NOW)
    delivery = WebhookAttempt.objects.first().delivery
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM app_webhookdelivery WHERE id = %s", [delivery.pk])
    # An attempt and its delivery deleted in the transaction that wrote them: nothing to
    # check at commit (as PostgreSQL's own deferred foreign key).
    with transaction.atomic():
        gone = WebhookDelivery.objects.create(
            subscription_id=delivery.subscription_id, event_type="price.changed", stream="s",
            data={}, created_at=NOW,
        )  # fmt: skip
        WebhookAttempt.objects.create(delivery=gone, number=1, attempted_at=NOW)
        gone.delete()
    # Moving a delivery to another month keeps its attempts valid; Django's cascade works.
    WebhookDelivery.objects.filter(pk=delivery.pk).update(created_at=NOW + timedelta(days=40))
    assert where(WebhookDelivery, delivery.pk).startswith("app_webhookdelivery_p")
    delivery.delete()
    assert not WebhookAttempt.objects.filter(delivery_id=delivery.pk).exists()


def test_prune_removes_the_same_rows_and_keeps_the_omnibus_window(receiver):
    populate(receiver)
    policy = RetentionPolicy(
        outbox_days=30, task_result_days=None, run_payload_days=None,
        price_history_days=40, ledger_days=40, audit_days=None,
    )  # fmt: skip
    expected = prune(policy, now=NOW, dry_run=True)
    prior = omnibus.current_reduction(Product.objects.get(sku="OMNI-1"), NOW)
    assert expected["webhook deliveries"] and expected["price history"] and expected["stock ledger"]
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    assert prune(policy, now=NOW, dry_run=True) == expected
    assert prune(policy, now=NOW) == expected
    assert prune(policy, now=NOW) == dict.fromkeys(expected, 0)
    assert omnibus.current_reduction(Product.objects.get(sku="OMNI-1"), NOW) == prior
    for product in Product.objects.all():
        total = StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"]
        assert total == product.stock
    assert not WebhookAttempt.objects.exclude(
        delivery_id__in=WebhookDelivery.objects.values("id")
    ).exists()


def test_the_change_flow_runs_on_partitioned_tables(receiver, run_worker):
    data = populate(receiver)
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    omni = Product.objects.get(sku="OMNI-1")
    set_price(omni, "75.00")
    result = process_pipeline(
        {"name": "feed", "steps": [
            {"op": "set_prices", "prices": {"OMNI-1": "74.00", "PLAIN-1": "8.00"}},
            {"op": "adjust_stock", "deltas": {"OMNI-1": -2}},
            {"op": "upsert_products", "rows": [{"sku": "NEW-1", "name": "New", "price": "5.00", "stock": 3}]},
        ]},
        user=data["user"],
    )  # fmt: skip
    assert result["status"] == "succeeded", result
    assert [h.new_price for h in PriceHistory.objects.filter(sku="OMNI-1")[:2]] == [
        Decimal("74.00"),
        Decimal("75.00"),
    ]
    # bulk_create's RETURNING gives the transfer's rows their ids; a replay finds them.
    moved = transfer_stock("OMNI-1", "NORTH", "MAIN", 2, user=data["user"], idempotency_key="t-2")
    assert all(m.pk for m in moved.movements)
    again = transfer_stock("OMNI-1", "NORTH", "MAIN", 2, user=data["user"], idempotency_key="t-2")
    assert again.replayed and [m.pk for m in again.movements] == [m.pk for m in moved.movements]
    omni.refresh_from_db()
    assert StockMovement.objects.filter(product=omni).aggregate(s=Sum("delta"))["s"] == omni.stock
    # The outbox delivers to a real receiver; attempts are logged against their delivery.
    call_command("deliver_pending", stdout=io.StringIO())
    run_worker()
    sent = [r.json for r in receiver.requests if r.rejected is None]
    prices = {body["data"]["new"] for body in sent if body["type"] == "price.changed"}
    assert {"75.00", "74.00", "8.00"} <= prices
    assert not WebhookDelivery.objects.filter(status="pending", created_at__gt=NOW).exists()
    assert WebhookAttempt.objects.filter(
        delivery__created_at__gt=NOW - timedelta(minutes=5)
    ).exists()
    # A saved delivery updates in place (UPDATE ... WHERE id), in its partition.
    delivery = WebhookDelivery.objects.latest("id")
    delivery.last_error = "checked"
    delivery.save()
    assert WebhookDelivery.objects.filter(last_error="checked").count() == 1


def test_later_schema_changes_still_apply(receiver):
    populate(receiver)
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    note = models.CharField(max_length=20, default="", blank=True)
    note.set_attributes_from_name("note")
    longer = models.CharField(max_length=120, db_index=True)
    longer.set_attributes_from_name("sku")
    old_sku = StockMovement._meta.get_field("sku")
    index = models.Index(fields=["sku", "created_at"], name="stockmovement_sku_time")
    place = models.ForeignKey(Location, null=True, on_delete=models.SET_NULL, related_name="+")
    place.set_attributes_from_name("extra_location")
    place.model = StockMovement
    with connection.schema_editor() as editor:  # what later migrations would run
        editor.add_field(StockMovement, note)
        editor.alter_field(StockMovement, old_sku, longer)
        editor.add_index(StockMovement, index)
        editor.add_field(StockMovement, place)
        editor.add_field(WebhookDelivery, note)
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_attribute a JOIN pg_inherits i ON i.inhrelid = a.attrelid "
            "WHERE i.inhparent = 'app_stockmovement'::regclass AND a.attname = 'note'"
        )
        assert cursor.fetchone()[0] == len(partitioning.partitions("app_stockmovement"))
        cursor.execute(  # the foreign key on the table, and on each partition
            "SELECT count(*) FROM pg_constraint WHERE contype = 'f' AND conname LIKE %s",
            ["%extra_location%"],
        )
        assert cursor.fetchone()[0] == 1 + len(partitioning.partitions("app_stockmovement"))
    with connection.schema_editor() as editor:
        editor.remove_index(StockMovement, index)
        editor.remove_field(StockMovement, place)
        editor.alter_field(StockMovement, longer, old_sku)
        editor.remove_field(StockMovement, note)
        editor.remove_field(WebhookDelivery, note)
    call_command("migrate", verbosity=0)  # nothing to apply; the tables are not in its way
    assert StockMovement.objects.count() > 0


def test_migration_0016_rebuilds_the_history_indexes_of_every_partition(receiver):
    """0016 drops and creates the two product-time indexes again (with the columns the API's
    pages show): on converted tables the parent's index and each partition's, both ways."""
    data = populate(receiver)
    headers, client = api_headers(data["user"]), Client()
    call_command("partition_tables", apply=True, ahead=3, stdout=io.StringIO())
    before = snapshot(client, headers)
    indexes = {"app_pricehistory": "pricehistory_product_time", "app_stockmovement": "stockmovement_product_time"}  # fmt: skip

    def product_time_indexes() -> dict[str, list[str]]:
        """Table -> the product-time index definition of the parent and of each partition."""
        found = {}
        for table, name in indexes.items():
            tables = [table, *(p for p, *_ in partitioning.partitions(table))]
            found[table] = [
                d for t in tables for n, d in index_definitions(t).items()
                if n == name or (t != table and "(product_id, " in d)
            ]  # fmt: skip
            assert len(found[table]) == len(tables)
        return found

    def includes_sku(found: dict[str, list[str]]) -> set[bool]:
        return {"sku" in d.split("INCLUDE")[1] for ds in found.values() for d in ds}

    assert includes_sku(product_time_indexes()) == {True}
    call_command("migrate", "app", "0015", verbosity=0)
    assert includes_sku(product_time_indexes()) == {False}
    call_command("migrate", "app", verbosity=0)
    assert includes_sku(product_time_indexes()) == {True}
    assert snapshot(client, headers) == before


def test_a_conversion_that_cannot_lock_changes_nothing_and_leaves_no_check(monkeypatch):
    """A long transaction starts reading the table just before the switch: the switch gives
    up after its tries, the table stays plain and takes any row (the CHECK added before is
    dropped again); a later run converts it."""
    import psycopg

    monkeypatch.setattr(partitioning, "LOCK_TIMEOUT", "200ms")
    monkeypatch.setattr(partitioning, "LOCK_TRIES", 2)
    settings = connection.settings_dict
    holder = psycopg.connect(
        dbname=settings["NAME"], user=settings["USER"], host=settings["HOST"],
        port=settings["PORT"] or 5432, password=settings["PASSWORD"] or None,
    )  # fmt: skip
    switch = partitioning._switch
    tries = []

    def reader_first(*args, **kwargs):
        tries.append(1)
        if len(tries) == 1:
            holder.execute("BEGIN")
            holder.execute("SELECT count(*) FROM app_pricehistory")
        try:
            return switch(*args, **kwargs)
        finally:
            if len(tries) == partitioning.LOCK_TRIES:
                holder.close()  # the long transaction ends after the last try

    monkeypatch.setattr(partitioning, "_switch", reader_first)
    try:
        with pytest.raises(CommandError, match="lock app_pricehistory: the table lock was not"):
            call_command("partition_tables", apply=True, only=["price_history"], verbosity=0)
    finally:
        holder.close()
    assert not partitioning.is_partitioned("app_pricehistory")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_constraint WHERE conrelid = 'app_pricehistory'::regclass "
            "AND contype = 'c'"
        )
        assert cursor.fetchone()[0] == 0
    monkeypatch.setattr(partitioning, "_switch", switch)
    call_command("partition_tables", apply=True, only=["price_history"], verbosity=0)
    assert partitioning.is_partitioned("app_pricehistory")


def test_cron_drops_the_check_of_a_conversion_interrupted_for_good():
    spec = partitioning.selected(("ledger",))[0]
    steps = partitioning.conversion_plan(spec, NOW)
    for step in steps[:2]:  # index and CHECK, then the process died
        step.run()
    bound = partitioning.legacy_bound(NOW)
    assert partitioning.ensure_ahead(3, now=NOW) == []  # its date is weeks away: kept
    done = partitioning.ensure_ahead(3, now=bound - timedelta(hours=12))
    assert done == ["app_stockmovement: dropped an interrupted conversion's CHECK"]
    StockMovement.objects.create(  # a row past the old bound is taken again
        location=Location.objects.get_or_create(code="MAIN", defaults={"name": "Main"})[0],
        sku="X", delta=1, stock_after=1, created_at=bound + timedelta(days=1),
    )  # fmt: skip
