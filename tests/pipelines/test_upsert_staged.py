"""The set-based route of ``upsert_products`` (``app.pipelines.upserts``): when it is
taken, that it has the object route's effects over many chunks (new and existing SKUs,
repeated SKUs, skipped rows, webhooks), that CSV rows checked without the model pass and
fail exactly as with it, and PostgreSQL's statistics after an upsert that grew a table."""

from __future__ import annotations

import csv
import io
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.test.utils import CaptureQueriesContext
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from app.models import Location, Product, StockAlert, StockLevel
from app.pipelines import rows as rows_module
from app.pipelines import upserts
from app.pipelines.rows import (
    ProductRow,
    RowError,
    _fast_batch,
    _fast_values,
    iter_csv_blocks,
    iter_csv_rows,
)
from app.pipelines.upserts import UPSERT_STAGE
from app.tracking import effects
from app.tracking.changes import StagedChanges
from app.utils.utils import process_pipeline
from tests.pipelines.test_identity import observe
from tests.pipelines.test_staged import on_route, outbox_rows

N = 2_500


def staged_queries(spec: dict) -> tuple[int, dict]:
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(spec)
    return sum(UPSERT_STAGE in q["sql"] for q in queries.captured_queries), result


@pytest.fixture
def products(db):
    Product.objects.bulk_create(
        Product(sku=f"S-{i:05d}", name=f"P{i}", price=Decimal("10.00"), stock=4 + i % 12)
        for i in range(N)
    )


def feed() -> str:
    """Existing SKUs (some with new prices, names, stocks, thresholds; some unchanged; one
    repeated), new ones (with and without stock), and two bad rows."""
    lines = ["sku,name,price,stock,low_stock_threshold"]
    for i in range(0, N, 2):
        price = "10.00" if i % 3 else f"{10 + i % 7}.5"
        stock = "" if i % 5 == 0 else str((i * 7) % 20)
        threshold = str(i % 9) if i % 4 == 0 else ""
        lines.append(f"S-{i:05d},{'P' if i % 6 else 'Renamed '}{i},{price},{stock},{threshold}")
    lines.append("S-00010,Again,11.11,3,")  # repeated: applied after the first one
    lines.append("S-00012,Bad price,ten,3,")
    for j in range(700):
        lines.append(f'NEW-{j:04d},"New, {j}",{j % 50}.99,{"" if j % 3 == 0 else j % 13},')
    lines.append("NEW-BAD,Bad stock,1.00,-4,")
    return "\n".join(lines) + "\n"


def outbox_by_sku() -> dict:
    """``outbox_rows`` with products named by SKU: PostgreSQL does not roll sequences back,
    so the products each route creates get other ids."""
    skus = dict(Product.objects.values_list("id", "sku"))
    found = {}
    for stream, rows in outbox_rows().items():
        kind, _, ident = stream.partition(":")
        if kind == "product":
            stream = f"product:{skus[int(ident)]}"
        found[stream] = [(t, s, re.sub(r'"id": \d+', '"id": N', d)) for t, s, d in rows]
    return found


@pytest.mark.parametrize("subscribed", [False, True], ids=["no webhooks", "subscribed"])
def test_both_routes_have_the_same_effects_over_many_chunks(products, subscribed, monkeypatch):
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 300)  # many chunks
    spec = {
        "name": "x",
        "policy": "skip_invalid_rows",
        "steps": [{"op": "upsert_products", "csv": feed()}],
    }
    seen, results = {}, {}
    for route in ("staged", "objects"):
        with on_route(route, subscribed=subscribed):
            staged, result = staged_queries(spec)
            assert (staged > 0) == (route == "staged")
            # Run ids differ (PostgreSQL does not roll sequences back): not the effects.
            state = {**observe(), "outbox": outbox_by_sku()}
            # Compared per SKU: the object route writes its chunks' updates grouped by
            # the fields they change, so rows of different SKUs come in another order.
            seen[route] = {
                k: re.sub(
                    r"pipeline:\d+",
                    "pipeline:N",
                    repr(sorted(v.items()) if isinstance(v, dict) else v),
                )
                for k, v in state.items()
            }
            results[route] = {k: result[k] for k in ("status", "steps", "totals", "rejected")}
            results[route]["price_changes"] = sorted(
                (c["sku"], c["old"], c["new"]) for c in result["price_changes"]
            )
    assert results["staged"]["status"] == "succeeded", results["staged"]
    assert results["staged"]["totals"]["rejected"] == 2
    assert [(r["row"], r["column"]) for r in results["staged"]["rejected"]] == [
        (N // 2 + 3, "price"),
        (N // 2 + 3 + 701, "stock"),
    ]
    assert results["staged"]["steps"][0]["created"] == 700
    assert results["staged"] == results["objects"]
    assert ("'price.changed'" in seen["staged"]["outbox"]) == subscribed
    assert ("'product.created'" in seen["staged"]["outbox"]) == subscribed
    assert "'initial stock'" in repr(seen["staged"]) and "'pending'" in repr(seen["staged"])
    for table in seen["staged"]:
        assert seen["staged"][table] == seen["objects"][table], table


def test_bad_cell_fails_the_run_naming_row_column_value(products):
    before = observe()
    text = "sku,name,price,stock\nS-00001,A,1.00,2\nS-00002,B,1.00,x7\n"
    _staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert result["status"] == "failed"
    [error] = result["error"]["errors"]
    assert error["loc"] == ["steps", 0, "csv", 3, "stock"]
    assert "'x7'" in error["msg"] and "valid integer" in error["msg"]
    assert observe() == before


def test_stock_below_other_locations_fails_naming_the_sku(products):
    north = Location.objects.create(code="NORTH", name="North")
    StockLevel.objects.create(
        product=Product.objects.get(sku="S-00003"), location=north, quantity=5
    )
    before = observe()
    text = "sku,name,price,stock\nS-00001,A,1.00,2\nS-00003,B,1.00,4\nNEW-1,C,1.00,0\n"
    staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert staged > 0
    assert result["error"]["errors"] == [
        {
            "loc": ["steps", 0, "csv", "S-00003"],
            "msg": "step 0 (upsert_products): stock of S-00003 would be 4, below the 5 units "
            "held at locations other than the default one",
        }
    ]
    assert observe() == before


def test_stock_moved_elsewhere_between_chunks_fails_naming_the_sku(products, monkeypatch):
    """No stock outside the default location when the step starts; stock for a product of
    the second chunk is moved there while the first chunk is written (as a located transfer
    committed meanwhile would be seen): the second chunk's check names the SKU."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 2)
    north = Location.objects.create(code="NORTH", name="North")
    real = upserts.write_rows
    calls = []

    def then_move_stock(unit, rows, **options):
        skus = sorted(rows.skus)  # the chunk lets its rows go once staged
        real(unit, rows, **options)
        calls.append(skus)
        if len(calls) == 1:
            StockLevel.objects.create(
                product=Product.objects.get(sku="S-00003"), location=north, quantity=5
            )

    monkeypatch.setattr(upserts, "write_rows", then_move_stock)
    before = observe()
    text = "sku,name,price,stock\nS-00001,A,1.00,2\nS-00002,B,1.00,2\nS-00003,C,1.00,4\n"
    staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert staged > 0 and calls == [["S-00001", "S-00002"]]
    assert result["error"]["errors"] == [
        {
            "loc": ["steps", 0, "csv", "S-00003"],
            "msg": "step 0 (upsert_products): stock of S-00003 would be 4, below the 5 units "
            "held at locations other than the default one",
        }
    ]
    assert observe() == before


def readers_alive() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "feed-reader"]


def test_the_next_chunk_is_read_while_one_is_written(products, monkeypatch):
    """The rows are parsed, checked and built into chunks by a thread of their own while
    the chunk before is written: the first chunk's write waits (in the writing thread) for
    the second chunk to be built, which a reader in the same thread could never do. The
    rows rejected meanwhile reach the run record in order (the reader's calls replayed)."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 300)
    writer = threading.current_thread()
    built, builders = threading.Event(), set()
    real_add, real_write = upserts.StageRows.add, upserts.write_rows
    writes = []

    def add(self, rows):
        builders.add(threading.current_thread())
        real_add(self, rows)
        if writes:  # a chunk after the one being written
            built.set()

    def write_rows(unit, rows, **options):
        writes.append(len(rows))
        if len(writes) == 1:
            assert built.wait(10), "the second chunk was not built while the first was written"
        real_write(unit, rows, **options)

    monkeypatch.setattr(upserts.StageRows, "add", add)
    monkeypatch.setattr(upserts, "write_rows", write_rows)
    spec = {
        "name": "x",
        "policy": "skip_invalid_rows",
        "steps": [{"op": "upsert_products", "csv": feed()}],
    }
    _staged, result = staged_queries(spec)
    assert result["status"] == "succeeded", result["error"]
    assert len(writes) > 2 and writer not in builders
    assert [(r["row"], r["column"]) for r in result["rejected"]] == [
        (N // 2 + 3, "price"),
        (N // 2 + 3 + 701, "stock"),
    ]
    assert readers_alive() == []


def test_the_first_chunk_is_smaller_so_writing_starts_early(products, monkeypatch):
    """The first chunk holds at most ``STAGE_FIRST_CHUNK`` rows, the others the database's
    ``STAGE_CHUNKS``: the writer waits only for the first to be read."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 100)
    monkeypatch.setattr(upserts, "STAGE_FIRST_CHUNK", 40)
    real_write, sizes = upserts.write_rows, []

    def write_rows(unit, rows, **options):
        sizes.append(len(rows))
        real_write(unit, rows, **options)

    monkeypatch.setattr(upserts, "write_rows", write_rows)
    text = "sku,name,price\n" + "".join(f"S-{i:05d},N{i},{i % 9}.50\n" for i in range(250))
    _staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert result["status"] == "succeeded" and result["steps"][0]["updated"] == 250
    assert sizes == [40, 100, 100, 10]


def test_a_bad_row_after_chunks_were_written_fails_the_run_and_stops_the_reader(
    products, monkeypatch
):
    """The reader's error is raised in the writing thread, after the chunks before it were
    written: the run fails naming the line, nothing stays written, no reader is left."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 100)
    before = observe()
    lines = [f"S-{i:05d},Renamed {i},{i % 50}.25,{i % 7}" for i in range(1000)]
    lines.insert(700, "S-09999,Bad,1.00,many")
    text = "sku,name,price,stock\n" + "\n".join(lines) + "\n"
    staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert staged > 0 and result["status"] == "failed"
    [error] = result["error"]["errors"]
    assert error["loc"] == ["steps", 0, "csv", 702, "stock"]
    assert observe() == before
    assert readers_alive() == []


def test_a_chunk_failing_to_write_stops_the_reader(products, monkeypatch):
    """A write that fails (stock below another location's, in the first chunk) ends the
    step while the reader still has rows: it stops, and leaves nothing written."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 50)
    north = Location.objects.create(code="NORTH", name="North")
    StockLevel.objects.create(
        product=Product.objects.get(sku="S-00003"), location=north, quantity=5
    )
    before = observe()
    text = "sku,name,price,stock\n" + "".join(
        f"S-{i:05d},N{i},{i % 9}.50,{i % 4}\n" for i in range(N)
    )
    _staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert result["status"] == "failed"
    assert result["error"]["errors"][0]["loc"] == ["steps", 0, "csv", "S-00003"]
    assert observe() == before
    assert readers_alive() == []


def test_stock_totals_are_looked_up_only_while_another_location_holds_stock(products, monkeypatch):
    """Each chunk's products are looked up in the levels only when some other location
    holds stock at all (a probe through the location index, after the chunk's locks):
    a single warehouse, or other locations holding nothing, cost no lookup."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 2)
    text = "sku,name,price,stock\n" + "".join(f"S-{i:05d},A,1.00,{i}\n" for i in range(1, 6))
    spec = {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}

    def lookups() -> int:
        with CaptureQueriesContext(connection) as queries:
            result = process_pipeline(spec)
        assert result["status"] == "succeeded", result.get("error")
        return sum("AS held" in q["sql"] for q in queries.captured_queries)

    assert lookups() == 0  # the default location only
    north = Location.objects.create(code="NORTH", name="North")
    level = StockLevel.objects.create(
        product=Product.objects.get(sku="S-00100"), location=north, quantity=0
    )
    assert lookups() == 0  # another location, holding nothing
    StockLevel.objects.filter(pk=level.pk).update(quantity=2)
    assert lookups() == 3  # once per chunk


def test_upsert_creates_the_default_level_a_product_lacks(db):
    """A product without a level at the default location (created without stock) gets one
    from an upsert giving it stock, beside a product that has one and a new product: the
    levels effect inserts the levels its UPDATE did not find, and only those."""
    Product.objects.create(sku="L-HAS", name="has", price=Decimal("1.00"), stock=5)
    Product.objects.create(sku="L-NONE", name="none", price=Decimal("1.00"), stock=0)
    assert not StockLevel.objects.filter(product__sku="L-NONE").exists()
    text = "sku,name,price,stock\nL-HAS,has,1.00,7\nL-NONE,none,1.00,4\nL-NEW,new,1.00,3\n"
    staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert result["status"] == "succeeded", result.get("error")
    assert staged  # the SQL route
    levels = dict(StockLevel.objects.values_list("product__sku", "quantity"))
    assert levels == {"L-HAS": 7, "L-NONE": 4, "L-NEW": 3}


# Names the PostgreSQL stage's COPY text must carry unchanged (quotes, backslashes, COPY's
# NULL and end-of-data markers, commas, braces, the word NULL, inner spaces, non-ASCII).
AWKWARD = ['Say "hi"', 'back\\slash \\"', "a,b", "{x}", "NULL", "null", "two  spaces", "Żółw ∑ 猫",
           "\\N", "\\.", "ends\\", "\\t \\n \\\\N"]  # fmt: skip


@pytest.mark.parametrize("thresholds", ["all", "none", "some"])
def test_chunk_giving_every_or_no_threshold_has_the_object_routes_effects(db, thresholds):
    """The staged ``UPDATE`` sets stock and threshold only where the chunk gives them
    (every row: the staged value; some: the staged value or the old one; none: left out):
    each form leaves the tables as the object route does, names of any characters intact."""

    def threshold(i: int) -> int | None:
        return {"all": i % 7, "none": None, "some": i % 7 if i % 2 else None}[thresholds]

    rows = [
        {"sku": f"A-{i}", "name": AWKWARD[i % len(AWKWARD)], "price": f"{i}.25", "stock": i % 5}
        | ({} if threshold(i) is None else {"low_stock_threshold": threshold(i)})
        for i in range(24)
    ]
    seen = {}
    for route in ("staged", "objects"):
        with on_route(route, subscribed=False):  # rolled back after each route
            Product.objects.bulk_create(
                Product(sku=f"A-{i}", name=f"old {i}", price=Decimal("3.00"), stock=2,
                        low_stock_threshold=4)
                for i in range(0, 24, 2)
            )  # fmt: skip
            staged, result = staged_queries(
                {"name": "x", "steps": [{"op": "upsert_products", "rows": rows}]}
            )
            assert result["status"] == "succeeded", result.get("error")
            assert (staged > 0) == (route == "staged")
            seen[route] = (
                sorted(Product.objects.values_list("sku", "name", "price", "stock",
                                                   "low_stock_threshold")),
                {  # per SKU: the object route writes rows in another order
                    k: re.sub(
                        r"pipeline:\d+",
                        "pipeline:N",
                        repr(sorted(v.items()) if isinstance(v, dict) else v),
                    )
                    for k, v in observe().items()
                },
            )  # fmt: skip
    products, _ = seen["staged"]
    assert {name for _, name, *_ in products} == set(AWKWARD)
    kept = {sku: t for sku, *_, t in products}
    assert kept["A-0"] == (4 if threshold(0) is None else threshold(0))  # existing, even
    for table in seen["staged"][1]:
        assert seen["staged"][1][table] == seen["objects"][1][table], table


@pytest.mark.parametrize("add", [1, 4, 1_000])
def test_chunks_kept_as_text_over_many_blocks_have_the_object_routes_effects(db, monkeypatch, add):
    """A chunk holds its rows as the stage's text, taken in ``STAGE_ADD`` rows at a time
    (blocks of three CSV lines here; a chunk of eleven rows): rows staged in input order
    across blocks and chunks, names of any characters intact, a blank stock in some blocks
    only (the chunk's count of given stocks), a SKU repeated in a later block (a new
    chunk), and existing and new products leave the tables as the object route does."""
    monkeypatch.setattr(rows_module, "FAST_BATCH", 3)
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 11)
    monkeypatch.setattr(upserts, "STAGE_ADD", add)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["sku", "name", "price", "stock"])
    for i in range(40):
        stock = "" if 9 <= i < 15 else i % 6  # two blocks without stock
        writer.writerow([f"A-{i}", AWKWARD[i % len(AWKWARD)], f"{i}.25", stock])
        if i == 20:
            writer.writerow(["A-17", "again " + AWKWARD[1], "1.50", 9])  # repeated
    seen = {}
    for route in ("staged", "objects"):
        with on_route(route, subscribed=False):  # rolled back after each route
            Product.objects.bulk_create(
                Product(sku=f"A-{i}", name=f"old {i}", price=Decimal("3.00"), stock=2)
                for i in range(0, 40, 3)
            )
            staged, result = staged_queries(
                {"name": "x", "steps": [{"op": "upsert_products", "csv": out.getvalue()}]}
            )
            assert result["status"] == "succeeded", result.get("error")
            assert (staged > 0) == (route == "staged")
            seen[route] = (
                sorted(Product.objects.values_list("sku", "name", "price", "stock")),
                list(Product.objects.order_by("pk").values_list("sku", flat=True)),  # input order
                {
                    k: re.sub(
                        r"pipeline:\d+",
                        "pipeline:N",
                        repr(sorted(v.items()) if isinstance(v, dict) else v),
                    )
                    for k, v in observe().items()
                },
            )
    products, _, _ = seen["staged"]
    assert {name for _, name, *_ in products} == {*AWKWARD, "again " + AWKWARD[1]}
    assert ("A-17", "again " + AWKWARD[1], Decimal("1.50"), 9) in products
    assert ("A-12", AWKWARD[12 % len(AWKWARD)], Decimal("12.25"), 2) in products  # kept
    assert seen["staged"] == seen["objects"]


def test_skus_and_names_with_copy_escapes_have_the_object_routes_effects(db):
    """SKUs may hold a backslash and quotes, names too (COPY's escape character; ``\\N``
    is its NULL): existing and new products of such SKUs are found and written by the
    staged route as by the object route."""
    skus = ["B\\N", "B\\", 'B"q"', "B\\.", "B\\t", "B\\\\N", "B-plain"]
    rows = [
        {"sku": sku, "name": AWKWARD[i % len(AWKWARD)] + sku, "price": f"{i}.10", "stock": i}
        for i, sku in enumerate(skus)
    ]
    seen = {}
    for route in ("staged", "objects"):
        with on_route(route, subscribed=False):  # rolled back after each route
            Product.objects.bulk_create(
                Product(sku=sku, name="old", price=Decimal("3.00"), stock=2) for sku in skus[::2]
            )
            staged, result = staged_queries(
                {"name": "x", "steps": [{"op": "upsert_products", "rows": rows}]}
            )
            assert result["status"] == "succeeded", result.get("error")
            assert (staged > 0) == (route == "staged")
            assert result["steps"][0]["created"] == 3, result["steps"]
            seen[route] = (
                sorted(Product.objects.values_list("sku", "name", "price", "stock")),
                {
                    k: re.sub(
                        r"pipeline:\d+",
                        "pipeline:N",
                        repr(sorted(v.items()) if isinstance(v, dict) else v),
                    )
                    for k, v in observe().items()
                },
            )
    assert [(sku, name) for sku, name, *_ in seen["staged"][0]] == sorted(
        (row["sku"], row["name"]) for row in rows
    )
    assert seen["staged"] == seen["objects"]


@pytest.mark.postgres
@pytest.mark.django_db
def test_copy_lines_read_back_unchanged():
    """What validation lets through never holds a tab or a line break, but ``copy_lines``
    escapes them all the same: every value reads back as given, ``None`` as NULL."""
    texts = ["tab\there", "line\nbreak", "cr\rhere", "\\N", "\\", "\\.", "a\\tb", "", "Żółw"]
    rows = [
        (text, text[::-1], Decimal(f"{i}.5"), None if i % 2 else i, None if i % 3 else 7)
        for i, text in enumerate(texts)
    ]
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE copied (ord integer, sku text, name text, price numeric, "
            "stock bigint, threshold bigint)"
        )
        with cursor.cursor.copy("COPY copied FROM STDIN") as copy:
            copy.write(upserts.copy_lines(list(zip(*rows, strict=True)), start=5))
        cursor.execute("SELECT ord, sku, name, price, stock, threshold FROM copied ORDER BY ord")
        back = cursor.fetchall()
        cursor.execute("DROP TABLE copied")
    assert back == [(i, *row) for i, row in enumerate(rows, start=5)]


@pytest.mark.parametrize("price", ["-0", "-0.00", "-0.0"])
def test_negative_zero_price_is_reported_as_zero_by_both_routes(products, price):
    """``-0`` is a valid price, plain zero: run results and webhook payloads say ``0.00``
    on the SQL route and on the object route alike."""
    spec = {
        "name": "x",
        "steps": [{"op": "upsert_products", "csv": f"sku,name,price\nS-00001,P1,{price}\n"}],
    }
    for route in ("staged", "objects"):
        with on_route(route):
            staged, result = staged_queries(spec)
            assert (staged > 0) == (route == "staged")
            assert result["status"] == "succeeded", result.get("error")
            assert [(c["sku"], c["old"], c["new"]) for c in result["price_changes"]] == [
                ("S-00001", "10.00", "0.00")
            ], route
            payloads = repr(outbox_rows())
            assert "'price.changed'" in payloads and '"0.00"' in payloads, route
            assert '"-0' not in payloads, route
            assert str(Product.objects.get(sku="S-00001").price) == "0.00", route


# --- CSV rows checked without the model -------------------------------------------------

cell = st.one_of(
    st.text(alphabet="0123456789.", max_size=14),
    st.text(alphabet="0123456789 .+-_e٣x", max_size=6),
    st.sampled_from(["", " ", "0", "00", "2147483647", "2147483648", "9999999999.99", "1.999"]),
)
name = st.one_of(
    st.text(max_size=6),
    st.sampled_from(["Box", " Box ", "", "   ", "a\tb", "x" * 200, "x" * 201, "\u2028"]),
)
sku = st.one_of(
    st.text(alphabet="AB-./ \x7f\u00e9_", max_size=5),
    st.sampled_from([".", "..", "A" * 64, "A" * 65, "A/B", "Ä"]),
)


@settings(max_examples=400, deadline=None)
@given(sku=sku, name=name, price=cell, stock=cell, threshold=cell)
def test_fast_check_agrees_with_the_model(sku, name, price, stock, threshold):
    """Whatever ``_fast_values`` accepts, the model accepts with the same values."""
    values = [sku, name, price, stock, threshold]
    fast = _fast_values((0, 1, 2, 3, 4), values)
    if fast is None:
        return
    data = {
        k: v
        for k, v in zip(
            ("sku", "name", "price", "stock", "low_stock_threshold"), values, strict=True
        )
        if v.strip() != "" or k in ("sku", "name", "price")
    }
    try:
        row = ProductRow.model_validate(data)
    except ValidationError as exc:  # pragma: no cover (the assertion's message)
        raise AssertionError(f"fast path accepted {values!r}: {exc}") from None
    assert fast == row.values()
    assert [str(v) for v in fast] == [str(v) for v in row.values()]


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(sku, name, cell, cell, cell).map(list)
        | st.sampled_from(
            [
                ["A-1", "Box", "1.5", "7", ""],
                ["A-2", "Two", "2", "", "3"],
                ["B.1", "Three", "0.01", "2147483647", "0"],
            ]
        ).map(list),
        min_size=1,
        max_size=6,
    ),
    at=st.sampled_from([(0, 1, 2, 3, 4), (0, 1, 2, 3, -1), (0, 1, 2, -1, -1), (2, 0, 1, 4, 3)]),
)
def test_batch_check_agrees_with_the_row_check(rows, at):
    """``_fast_batch`` takes a batch only when ``_fast_values`` takes every row of it,
    with the same values."""
    batch = _fast_batch(at, rows)
    if batch is None:
        return
    assert batch == [_fast_values(at, row) for row in rows]
    assert [str(v) for row in batch for v in row] == [
        str(v) for row in rows for v in _fast_values(at, row)
    ]


def test_batched_rows_pass_and_fail_as_one_by_one(monkeypatch):
    """Rows read ahead and checked in batches give the rows, rejections and first error
    of a check row by row (``FAST_BATCH`` 1), in the same order: a bad cell in a batch
    comes before a malformed record read after it."""
    lines = ["sku,name,price,stock"]
    for i in range(50):
        lines.append(f"A-{i},Box {i},{i}.5,{i % 4}")
    lines[8] = "A-7,Box 7,ten,3"  # a bad price inside a batch
    lines[20] = "A-19,Box 19,1.00"  # a short row
    lines[30] = "A-29,  ,1.00,2"  # a blank name
    lines.append("")  # a blank line
    lines.append("A-50,Box,1.00, 7")  # a count with a space: row by row, accepted
    good = "\n".join(lines) + "\n"
    malformed = good + 'A-51,"' + "x" * (csv.field_size_limit() + 1) + '",1.00,1\n'

    def read(text: str, batch: int, skip: bool):
        monkeypatch.setattr(rows_module, "FAST_BATCH", batch)
        rejected: list[str] = []
        found: list = []
        try:
            for line, row in iter_csv_rows(
                io.StringIO(text), skip=rejected.append if skip else None, as_values=True
            ):
                found.append((line, row))
        except RowError as exc:
            return found, [str(r) for r in rejected], str(exc)
        return found, [str(r) for r in rejected], None

    for text in (good, malformed):
        for skip in (False, True):
            one_by_one = read(text, 1, skip)
            assert read(text, 16, skip) == one_by_one
            assert read(text, 1000, skip) == one_by_one
    found, rejected, error = read(good, 1000, skip=True)
    assert error is None and len(found) == 48 and found[-1][1][3] == 7
    assert [r.split(",")[0] for r in rejected] == ["row 9", "row 21", "row 31"]
    assert read(malformed, 1000, skip=False)[2].startswith("line 9, column price")
    assert "field larger than field limit" in read(malformed, 1000, skip=True)[2]


@pytest.mark.parametrize(
    "line",
    [
        '"A\nB",Box,1.00,1',  # a SKU holding a line break (the model refuses it)
        'A-1,Box,"1\n2",1',  # a price holding one
        'A-1,Box,1.00,"1\n2"',  # a count holding one
        'A-1,Box,1.00,"\n"',  # a count of a line break alone
    ],
)
def test_batch_check_takes_no_cell_holding_a_line_break(monkeypatch, line):
    """A quoted cell may hold a line break: the batch check, which joins a column's cells
    by line breaks, must not read it as two cells of the common form (a SKU with a line
    break accepted, a price or count failing with an unlocated error)."""
    text = "sku,name,price,stock\nA-0,Zero,1.00,2\n" + line + "\n"

    def read(as_values: bool):
        rejected: list[str] = []
        found = [
            (line, row if as_values else row.values())
            for line, row in iter_csv_rows(
                io.StringIO(text), skip=rejected.append, as_values=as_values
            )
        ]
        return found, [str(r) for r in rejected]

    model = read(as_values=False)
    for batch in (1, 1000):
        monkeypatch.setattr(rows_module, "FAST_BATCH", batch)
        assert read(as_values=True) == model


_ODD = st.one_of(
    cell,
    sku,
    st.text(alphabet='AZ09.-\n\r" ,\ufeff\u0663', max_size=5),
    st.sampled_from(["A\nB", "1\n2", "\n", "7\n", "\r\n", '"', "\ufeffA", "1.0\n0"]),
)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(
        st.tuples(st.integers(0, 4), _ODD).map(
            lambda odd: [
                odd[1] if i == odd[0] else v for i, v in enumerate(["A-1", "Box", "1.00", "7", ""])
            ]
        ),
        min_size=1,
        max_size=8,
    )
)
def test_batched_csv_values_equal_the_model_rows(rows):
    """Whole CSV texts (quoted cells with line breaks, quotes, commas, BOMs, unicode
    digits): the rows and rejections of the batch check are the model's."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["sku", "name", "price", "stock", "low_stock_threshold"])
    writer.writerows(rows)

    def read(as_values: bool):
        rejected: list[str] = []
        found = [
            (line, row if as_values else row.values())
            for line, row in iter_csv_rows(
                io.StringIO(buffer.getvalue()), skip=rejected.append, as_values=as_values
            )
        ]
        return found, [str(r) for r in rejected]

    assert read(as_values=True) == read(as_values=False)


_LINE = st.one_of(
    st.sampled_from(  # the common form, often: blocks of it are read whole
        ["A-1,Box,1.00,7,", "A-2,Two,2,,3", "B.1,Three,0.01,2147483647,0", "A-3,Box,1.5,0,1"]
    ),
    st.sampled_from(
        [
            "",  # a blank line
            "   ",
            "A-4,Short,1.00",  # too few values
            "A-5,Box,1.00,1,2,3",  # too many
            'A-6,"Two\nlines",1.00,1,',  # a record of two lines (refused: a line break)
            'A-7,"Open',  # a quoted cell going on over the next line(s)
            'x",1.00,2,',
            'A-8,"Quoted, name",1.50,3,',
            "A-9,Bad,ten,1,",
            "A-10,Box,1.00,-1,",
            "A-11,Box,1.00, 7,",  # accepted row by row only
            "A-1,Again,1.00,7,",  # a repeated SKU
            "A-12," + "x" * 45 + ",1.00,1,",  # over the field size limit below
            'A-13,"' + "y" * 45 + '",1.00,1,',
            "\ufeffA-14,Box,1.00,1,",
        ]
    ),
    st.lists(_ODD, min_size=5, max_size=5).map(lambda cells: ",".join(cells)),
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(_LINE, max_size=12),
    ends=st.sampled_from(["\n", "\r\n", "\r"]),
    last=st.booleans(),
    batch=st.sampled_from([1, 2, 3, 5, 1000]),
    skip=st.booleans(),
)
def test_whole_blocks_read_as_record_by_record(lines, ends, last, batch, skip):
    """CSV lines read ``FAST_BATCH`` at a time as whole blocks (``iter_csv_blocks``) give
    the model's rows, line numbers, rejections and first error (a malformed record, a
    field over the size limit, a record going on past a block's last line, blank lines,
    line endings, no line break at the end)."""
    text = ends.join(["sku,name,price,stock,low_stock_threshold", *lines]) + (ends if last else "")
    assert_blocks_read_as_the_model(text, batch=batch, skip=skip)


def assert_blocks_read_as_the_model(text: str, *, batch: int, skip: bool) -> None:
    """``text`` read by ``iter_csv_blocks`` in whole blocks of ``batch`` lines gives what
    it gives a record at a time (the model): rows with their line numbers and values,
    rejections (``skip``), the first error. The field size limit is lowered to 40."""

    def read(as_values: bool):
        rejected: list[str] = []
        found: list = []
        try:
            for block in iter_csv_blocks(
                io.StringIO(text, newline=""),
                skip=rejected.append if skip else None,
                as_values=as_values,
            ):
                found += [(n, row if as_values else row.values()) for n, row in block]
        except RowError as exc:
            return found, [str(r) for r in rejected], str(exc)
        return found, [str(r) for r in rejected], None

    limit = csv.field_size_limit(40)
    batch_before = rows_module.FAST_BATCH
    try:
        model = read(as_values=False)
        rows_module.FAST_BATCH = batch
        got = read(as_values=True)
        assert got == model
        assert [[str(v) for v in row] for _, row in got[0]] == [
            [str(v) for v in row] for _, row in model[0]
        ]
    finally:
        csv.field_size_limit(limit)
        rows_module.FAST_BATCH = batch_before


def test_whole_blocks_are_taken_without_the_row_by_row_check(monkeypatch):
    """A CSV of the common form (a quoted name too) is read a block at a time: no row goes
    through ``_fast_values`` or the model; a block holding one odd row is read record by
    record, the others still whole."""
    lines = ["sku,name,price,stock"]
    lines += [f'A-{i},"Box {i}, blue",{i}.50,{i % 7}' for i in range(10)]
    calls: list = []
    real = rows_module._fast_values
    monkeypatch.setattr(rows_module, "_fast_values", lambda *a: calls.append(a) or real(*a))
    monkeypatch.setattr(rows_module, "FAST_BATCH", 4)
    found = list(iter_csv_blocks(io.StringIO("\n".join(lines) + "\n"), as_values=True))
    assert [len(block) for block in found] == [4, 4, 2] and calls == []
    assert found[0][0] == (2, ("A-0", "Box 0, blue", Decimal("0.50"), 0, None))
    lines[6] = "A-5,Box 5,1.00, 5"  # a count with a space: accepted, row by row
    found = list(iter_csv_blocks(io.StringIO("\n".join(lines) + "\n"), as_values=True))
    assert [len(block) for block in found] == [4, 1, 1, 1, 1, 2]
    assert found[1][0] == (6, ("A-4", "Box 4, blue", Decimal("4.50"), 4, None))
    assert found[2][0] == (7, ("A-5", "Box 5", Decimal("1.00"), 5, None))


def test_no_whole_blocks_with_a_column_the_check_does_not_read(monkeypatch):
    """A column ``_fast_batch`` does not check (not an upsert column: only a direct caller
    of ``iter_csv_rows`` can have one) may hold a quoted line break going on past a block's
    last line: such a CSV is read record by record, as the model reads it."""
    text = 'sku,name,price,note\nA-1,Box,1.00,"one\ntwo"\nA-2,Box,2.00,x\n'

    def read(as_values: bool):
        return [
            (line, row if as_values else row.values())
            for line, row in iter_csv_rows(io.StringIO(text), skip=print, as_values=as_values)
        ]

    monkeypatch.setattr(ProductRow, "model_config", {**ProductRow.model_config, "extra": "ignore"})
    ProductRow.model_rebuild(force=True)
    try:
        model = read(as_values=False)
        monkeypatch.setattr(rows_module, "FAST_BATCH", 1)  # the block ends inside the quotes
        assert (
            read(as_values=True)
            == model
            == [
                (3, ("A-1", "Box", Decimal("1.00"), None, None)),
                (4, ("A-2", "Box", Decimal("2.00"), None, None)),
            ]
        )
    finally:
        monkeypatch.undo()
        ProductRow.model_rebuild(force=True)


def test_csv_values_equal_model_rows_in_any_column_order():
    text = (
        "price,stock,sku,name\n1.5,7,A-1,Box\n,3,A-2,Bad\n2,,A-3,Two\n"
        "10.999,1,A-4,Bad\n007.10,0012,A-5,Lead\n"
    )
    as_models, as_values = [], []
    list(iter_csv_rows(io.StringIO(text), skip=as_models.append))
    models = [row.values() for _, row in iter_csv_rows(io.StringIO(text), skip=lambda r: None)]
    values = [
        row for _, row in iter_csv_rows(io.StringIO(text), skip=as_values.append, as_values=True)
    ]
    assert values == models
    assert [str(v) for row in values for v in row] == [str(v) for row in models for v in row]
    assert [str(r) for r in as_values] == [str(r) for r in as_models]
    assert [r.column for r in as_values] == ["price", "price"]


# --- PostgreSQL: fresh statistics after a large upsert ---------------------------------


def last_analyze(table: str):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")
        cursor.execute("SELECT last_analyze FROM pg_stat_user_tables WHERE relname = %s", [table])
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_upsert_that_grew_the_catalogue_analyzes_it_after_commit(monkeypatch, run_worker):
    """The run enqueues the ANALYZE on commit (a task: the run does not wait for it)."""
    monkeypatch.setattr(upserts, "ANALYZE_MIN_ROWS", 50)
    monkeypatch.setattr(upserts, "ANALYZE_ALWAYS_ROWS", 10**9)
    Product.objects.bulk_create(
        Product(sku=f"T-{i}", name=f"P{i}", price=Decimal("1.00")) for i in range(100)
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE app_product")
    before = last_analyze("app_product")
    small = "sku,name,price\n" + "".join(f"U-{i},N,2.00\n" for i in range(10))
    assert (
        process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": small}]})[
            "status"
        ]
        == "succeeded"
    )
    run_worker()
    assert last_analyze("app_product") == before  # 10 rows: below the minimum
    grown = "sku,name,price,stock\n" + "".join(f"V-{i},N,2.00,3\n" for i in range(60))
    assert (
        process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": grown}]})[
            "status"
        ]
        == "succeeded"
    )
    assert last_analyze("app_product") == before  # not in the run: by the task it enqueued
    run_worker()
    after = last_analyze("app_product")
    assert after is not None and after > before
    with connection.cursor() as cursor:
        cursor.execute("SELECT relkind FROM pg_class WHERE relname = 'app_stockmovement'")
        partitioned = cursor.fetchone()[0] == "p"
    # 60 ledger rows, from none; a partitioned parent is skipped (ANALYZE would sample
    # every partition under the run's follow-up)
    assert (last_analyze("app_stockmovement") is None) == partitioned
    with connection.cursor() as cursor:
        cursor.execute("SELECT reltuples FROM pg_class WHERE relname = 'app_product'")
        assert cursor.fetchone()[0] == 170


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_failed_analyze_leaves_the_committed_run_succeeded(monkeypatch, caplog, run_worker):
    """Another session holds a lock ANALYZE needs (not one the upsert's writes need): the
    ANALYZE gives up at its lock_timeout, the run stays SUCCEEDED, a warning is logged."""
    from app.models import PipelineRun

    monkeypatch.setattr(upserts, "ANALYZE_MIN_ROWS", 50)
    monkeypatch.setattr(upserts, "ANALYZE_ALWAYS_ROWS", 10**9)
    monkeypatch.setattr(upserts, "ANALYZE_LOCK_TIMEOUT", "200ms")
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE app_product")
    before = last_analyze("app_product")
    locker = connections.create_connection("default")
    locker.set_autocommit(False)
    try:
        with locker.cursor() as cursor:
            cursor.execute("LOCK TABLE app_product IN SHARE UPDATE EXCLUSIVE MODE")
        grown = "sku,name,price,stock\n" + "".join(f"V-{i},N,2.00,3\n" for i in range(60))
        result = process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": grown}]})
        with caplog.at_level("WARNING", logger="app.pipelines.upserts"):
            run_worker()
    finally:
        locker.rollback()
        locker.close()
    assert result["status"] == "succeeded", result.get("error")
    assert PipelineRun.objects.get(pk=result["run_id"]).status == PipelineRun.Status.SUCCEEDED
    assert Product.objects.filter(sku__startswith="V-").count() == 60
    assert last_analyze("app_product") == before
    assert any("ANALYZE after a large upsert failed" in r.getMessage() for r in caplog.records)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_no_upsert_stage_outlives_its_transaction(monkeypatch):
    """Behind a transaction pooler the next transaction of any client may get the server
    connection a run used: the stage ends with the run, committed or rolled back."""
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 3)  # several chunks, one stage

    def stages_left() -> int:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_class WHERE relname = ANY(%s) AND relpersistence = 't'",
                [[UPSERT_STAGE, upserts.UPSERT_ROWS]],
            )
            return cursor.fetchone()[0]

    text = "sku,name,price,stock\n" + "".join(f"W-{i},N,{i}.00,{i}\n" for i in range(8))
    for _ in range(2):  # the second run updates what the first created
        staged, result = staged_queries(
            {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
        )
        assert result["status"] == "succeeded" and staged > 0
        assert stages_left() == 0
    bad = text + "W-9,N,1.00,-1\n"
    _staged, failed = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": bad}]}
    )
    assert failed["status"] == "failed"
    assert stages_left() == 0
    assert Product.objects.filter(sku__startswith="W-").count() == 8


@pytest.mark.postgres
def test_stage_is_analyzed_from_a_small_sample(products, monkeypatch):
    """The stage and its copied rows are analyzed for their size and shares, from a sample
    of ``STAGE_STATISTICS * 300`` rows, not the default 30,000: their histograms have
    ``STAGE_STATISTICS`` buckets, not 100. The statistics target is the server's again
    for whatever the run analyzes next."""
    seen = {}
    check = upserts._check_totals

    def checked(unit, cursor, key):
        cursor.execute(
            "SELECT tablename, array_length(histogram_bounds, 1) FROM pg_stats "
            "WHERE tablename = ANY(%s) AND attname = 'ord'",
            [[UPSERT_STAGE, upserts.UPSERT_ROWS]],
        )
        seen.update(cursor.fetchall())
        cursor.execute("SHOW default_statistics_target")
        seen["target"] = cursor.fetchone()[0]
        return check(unit, cursor, key)

    monkeypatch.setattr(upserts, "_check_totals", checked)
    text = "sku,name,price,stock\n" + "".join(f"NEW-{i},C,1.00,{i}\n" for i in range(500))
    _staged, result = staged_queries(
        {"name": "x", "steps": [{"op": "upsert_products", "csv": text}]}
    )
    assert result["status"] == "succeeded", result.get("error")
    with connection.cursor() as cursor:
        cursor.execute("SHOW default_statistics_target")
        server = cursor.fetchone()[0]
    buckets = upserts.STAGE_STATISTICS + 1
    assert seen == {UPSERT_STAGE: buckets, upserts.UPSERT_ROWS: buckets, "target": server}
    assert int(server) * 300 > 500  # the server's target would have sampled every row


@pytest.mark.sqlite
def test_sqlite_statements_avoid_json_arrow_operators(products):
    """``->>`` needs SQLite 3.38 (Django 5.2 supports 3.31; Ubuntu 22.04 ships 3.37): the
    SQLite statements of the upsert and delete routes use ``json_extract``."""
    text = "sku,name,price,stock\nS-00001,A,1.00,2\nNEW-1,C,1.00,0\n"
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(
            {
                "name": "x",
                "steps": [
                    {"op": "upsert_products", "csv": text},
                    {"op": "delete_products", "skus": ["S-00002", "S-00003"]},
                ],
            }
        )
    assert result["status"] == "succeeded", result
    staged = [q["sql"] for q in queries.captured_queries if UPSERT_STAGE in q["sql"]]
    assert staged
    assert [q["sql"] for q in queries.captured_queries if "->" in q["sql"]] == []
    assert Product.objects.get(sku="NEW-1").name == "C"
    assert Product.objects.get(sku="S-00001").stock == 2


@pytest.mark.sqlite
def test_delete_without_returning_on_old_sqlite(products, monkeypatch):
    """Before SQLite 3.35 (no ``DELETE ... RETURNING``) the deleted rows are found first,
    under the transaction's write lock: same count, same rows gone."""
    import sqlite3

    monkeypatch.setattr(sqlite3, "sqlite_version_info", (3, 34, 1))
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(
            {"name": "x", "steps": [{"op": "delete_products", "skus": ["S-00002", "S-00005"]}]}
        )
    assert result["status"] == "succeeded", result.get("error")
    deletes = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("DELETE")]
    assert deletes and not any("RETURNING" in sql for sql in deletes)
    assert not Product.objects.filter(sku="S-00002").exists()
    assert Product.objects.count() == N - 2


def test_upsert_inserts_levels_for_its_new_products_only_when_every_old_one_has_its_own(db):
    """When the levels ``UPDATE`` finds a level for each existing product whose stock the
    upsert changes (the stage counts them, ``STOCK_UPDATED``), the missing levels are
    looked for among the created products alone; the levels are those of the object route
    (a product without stock gets none), and a product lacking its level still gets one
    (``test_upsert_creates_the_default_level_a_product_lacks``)."""
    Product.objects.create(sku="M-OLD", name="old", price=Decimal("1.00"), stock=5)
    Product.objects.create(sku="M-SAME", name="same", price=Decimal("1.00"), stock=2)
    text = (
        "sku,name,price,stock\nM-OLD,old,1.00,9\nM-SAME,same,2.00,2\n"
        "M-NEW,new,1.00,3\nM-ZERO,zero,1.00,0\n"
    )
    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline({"name": "x", "steps": [{"op": "upsert_products", "csv": text}]})
    assert result["status"] == "succeeded", result.get("error")
    inserts = [
        q["sql"] for q in queries.captured_queries if 'INSERT INTO "app_stocklevel"' in q["sql"]
    ]
    levels = dict(StockLevel.objects.values_list("product__sku", "quantity"))
    assert levels == {"M-OLD": 9, "M-SAME": 2, "M-NEW": 3}
    if connection.vendor == "sqlite":  # PostgreSQL: one statement updates and inserts
        assert len(inserts) == 1 and "c.kind = 'created'" in inserts[0]


@pytest.mark.postgres
@pytest.mark.parametrize("existing", [0, 300], ids=["empty catalogue", "mostly new"])
def test_the_effects_plan_for_the_rows_an_import_of_new_products_changed(db, existing):
    """The stage is analyzed before its new rows have products; a chunk of mostly new SKUs
    analyzes it again once they have them, or the effects' statements are planned for
    almost no changed rows (a first import of 100,000 products into an empty catalogue
    spent 95 s in the alerts statement's loops; 3 s the rest). Judged by the planner's
    estimate of the change set each effect reads, not by time."""
    Product.objects.bulk_create(
        Product(sku=f"E-{i:04d}", name="E", price=Decimal("1.00"), stock=9) for i in range(existing)
    )
    lines = [f"E-{i:04d},E,2.00,1" for i in range(existing)]
    lines += [f"NEW-{i:05d},N,1.50,{i % 9}" for i in range(2_000)]
    estimates = []

    def probe(changes, *, using):
        if isinstance(changes, StagedChanges):
            [(sql, params)] = changes.select("c.pk")
            estimates.append((planned_rows(sql, params), changes.count))

    with effect_added(probe):
        stage_statements, result = staged_queries(_upsert(lines))
    assert result["status"] == "succeeded" and stage_statements
    assert estimates == [(pytest.approx(2_000 + existing, rel=0.5), 2_000 + existing)]


@pytest.mark.postgres
def test_a_first_import_analyzes_the_tables_it_filled_before_its_next_chunk(db, monkeypatch):
    """A new database: the tables the effects filter have no statistics until autovacuum
    comes, and the run fills them. Before its second chunk the run analyzes them, so the
    planner knows how many alerts are open (without: it takes ``resolved_at IS NULL`` to
    match 0.5 % of the rows, and looped over the open alerts of a 100,000-row first import
    for 95 s)."""
    tables = [model._meta.db_table for model in upserts.PLANNED]
    with connection.cursor() as cursor:  # as never analyzed (rolled back with the test)
        cursor.execute("DELETE FROM pg_statistic WHERE starelid = ANY(%s::regclass[])", [tables])
        cursor.execute(
            "UPDATE pg_class SET reltuples = -1 WHERE oid = ANY(%s::regclass[])", [tables]
        )
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, 1_000)
    open_alerts = "SELECT 1 FROM app_stockalert WHERE location_id IS NULL AND resolved_at IS NULL"
    seen = []

    def probe(changes, *, using):
        if isinstance(changes, StagedChanges):
            seen.append(
                (
                    planned_rows(open_alerts),
                    StockAlert.objects.filter(location=None, resolved_at=None).count(),
                )
            )

    lines = [f"NEW-{i:05d},N,1.50,{i % 10}" for i in range(2_000)]  # half of them low
    with effect_added(probe), CaptureQueriesContext(connection) as queries:
        assert process_pipeline(_upsert(lines))["status"] == "succeeded"
    # After the second chunk: 1,000 open alerts, and the statistics taken before it (500).
    _, (estimate, open_now) = seen
    assert open_now == 1_000 and 500 * 0.5 <= estimate <= 1_000 * 1.5
    analyzed = [q["sql"] for q in queries.captured_queries if q["sql"].startswith("ANALYZE (")]
    assert set(analyzed) == {
        f"ANALYZE (SKIP_LOCKED) {connection.ops.quote_name(t)}" for t in tables
    }
    # Once they have statistics, a run analyzes nothing.
    with CaptureQueriesContext(connection) as queries:
        assert process_pipeline(_upsert(lines[:10]))["status"] == "succeeded"
    assert not [q for q in queries.captured_queries if q["sql"].startswith("ANALYZE (")]


def _upsert(lines: list[str]) -> dict:
    return {
        "steps": [{"op": "upsert_products", "csv": "sku,name,price,stock\n" + "\n".join(lines)}]
    }


def planned_rows(sql: str, params=()) -> float:
    """The planner's estimate of the rows ``sql`` returns (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute(f"EXPLAIN (FORMAT JSON) {sql}", params)
        return cursor.fetchone()[0][0]["Plan"]["Plan Rows"]


@contextmanager
def effect_added(effect) -> Iterator[None]:
    """``effect`` after the project's, for the block."""
    effects.register("test_probe", effect)
    try:
        yield
    finally:
        effects.unregister("test_probe")


@pytest.mark.postgres
@pytest.mark.parametrize("order", ["sku order", "shuffled"])
def test_a_chunk_reads_the_catalogue_in_proportion_to_itself(db, monkeypatch, order):
    """Each chunk's lookup reads its own products (a probe of the SKU index per row, in
    any order) and its product ``UPDATE`` its own range of ids, not the whole catalogue (a
    hash join scanned it) or the primary key from its first row (a merge join): otherwise a
    1,000,000-row import reads the catalogue once per chunk, in time growing with the
    square of its size. A shuffled feed (every chunk spans the whole fed range, not its own
    slice of it) gives the same result and reads no more than the fed range per chunk.
    Judged by the rows PostgreSQL read from ``app_product`` in the run's transaction
    (``pg_stat_xact_user_tables``), not by time."""
    size, chunk, fed = 20_000, 2_000, 6_000
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO app_product (sku, name, price, stock, reserved, low_stock_threshold, "
            "created_at, updated_at) SELECT 'C-' || lpad(i::text, 6, '0'), 'C', 1.00, 20, 0, "
            "5, now(), now() FROM generate_series(1, %s) i",
            [size],
        )
        cursor.execute("ANALYZE app_product")
    monkeypatch.setitem(upserts.STAGE_CHUNKS, connection.vendor, chunk)
    lines = [f"C-{i:06d},C,2.00,21" for i in range(size - fed + 1, size + 1)]
    if order == "shuffled":
        lines = lines[1::2] + lines[::2]

    def read() -> tuple[int, int]:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq_tup_read, COALESCE(idx_tup_fetch, 0) FROM pg_stat_xact_user_tables "
                "WHERE relname = 'app_product'"
            )
            return cursor.fetchone()

    (seq_before, idx_before) = read()
    result = process_pipeline(_upsert(lines))
    (seq_after, idx_after) = read()
    assert result["status"] == "succeeded" and result["steps"][0]["updated"] == fed
    assert Product.objects.filter(price=Decimal("2.00"), stock=21).count() == fed
    rows_read = seq_after - seq_before + idx_after - idx_before
    # Per row, whatever the order: a probe of the SKU index and the fetch by id that locks
    # it. The UPDATE reads its chunk's range of ids: the chunk's own rows in SKU order, the
    # whole fed range when shuffled. And a few single rows elsewhere in the run.
    updated = fed if order == "sku order" else fed * (fed // chunk)
    assert rows_read <= 2 * fed + updated + 10, rows_read
