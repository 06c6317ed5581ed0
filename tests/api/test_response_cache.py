"""The shared-cache layer of GET /api/products/<sku> and of bearer tokens, against real Redis.

Each test runs with the Redis cache (DB 9, flushed around every test) and real commits
(``transaction=True``), because invalidation happens when a transaction commits.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import redis
from django.core.cache import cache
from django.db import transaction
from django.test import override_settings
from django.utils import timezone

from app.core import oncommit
from app.models import ApiToken, PriceHistory, Product
from app.services import cache_guard, product_cache
from app.services.tokens import cache_key, create_token, revoke_token
from app.utils.utils import process_pipeline
from tests.api.conftest import ApiClient, assert_error_shape, user_with
from tests.conftest import redis_test_url
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db(transaction=True)

REDIS = {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": redis_test_url("response_cache")}
DOWN = {"BACKEND": "stockpipe.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/11"}


@pytest.fixture
def shared_cache():
    with override_settings(CACHES={"default": REDIS}):
        cache.clear()
        assert cache_guard.enabled()
        yield cache
        cache.clear()


@pytest.fixture
def reader_token(db):
    return create_token(user_with(), "tests")


@pytest.fixture
def client_(reader_token):
    return ApiClient(reader_token[1])


def get(client, sku):
    response = client.get(f"/api/products/{sku}")
    assert response.status_code == 200, response.content
    return response.json()


def cached_twice(client, sku, django_assert_num_queries):
    """GET twice; the second answer comes from the cache with no query at all."""
    first = get(client, sku)
    with django_assert_num_queries(0):
        assert get(client, sku) == first
    return first


def test_second_get_is_served_from_the_cache_unchanged(
    shared_cache, client_, django_assert_num_queries
):
    ProductFactory(sku="C-1", price=Decimal("12.50"), stock=3)
    body = cached_twice(client_, "C-1", django_assert_num_queries)
    assert (body["price"], body["stock"], body["prior_price"]) == ("12.50", 3, None)
    with override_settings(STOCKPIPE_API_CACHE=False):
        assert get(client_, "C-1") == body  # the uncached rendering is the same document


def test_locmem_cache_is_not_used(client_, django_assert_max_num_queries):
    """Development's per-process cache cannot see other processes' invalidations."""
    assert not cache_guard.enabled()
    ProductFactory(sku="C-2")
    get(client_, "C-2")
    response = None
    with django_assert_max_num_queries(10) as queries:
        response = get(client_, "C-2")
    assert response["sku"] == "C-2"
    assert len(queries) >= 2  # token and product read from the database again


def test_unknown_sku_is_not_cached(shared_cache, client_):
    assert_error_shape(client_.get("/api/products/NOPE"), 404)
    ProductFactory(sku="NOPE")
    assert get(client_, "NOPE")["sku"] == "NOPE"


def _save(p):
    p.price = Decimal("7.00")
    p.save()


def _update(p):
    Product.objects.filter(pk=p.pk).update(price=Decimal("7.00"))


def _bulk_update(p):
    p.price = Decimal("7.00")
    Product.objects.bulk_update([p], ["price"])


def _upsert(p):
    Product.objects.bulk_create(
        [Product(sku=p.sku, name=p.name, price=Decimal("7.00"), stock=p.stock)],
        update_conflicts=True,
        update_fields=["price"],
        unique_fields=["sku"],
    )


def _pipeline(p):
    process_pipeline({"steps": [{"op": "set_prices", "prices": {p.sku: "7.00"}}]})


def _adjust_pipeline(p):  # the SQL route of adjust_prices (set_prices's is _pipeline)
    process_pipeline(
        {"steps": [{"op": "adjust_prices", "select": {"sku_prefix": "W-"}, "percent": "-30"}]}
    )


def _api_patch(p):
    writer = user_with("change_product")
    response = ApiClient(create_token(writer, "w")[1]).patch(
        f"/api/products/{p.sku}", {"price": "7.00"}
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "write",
    [_save, _update, _bulk_update, _upsert, _pipeline, _adjust_pipeline, _api_patch],
    ids=lambda f: f.__name__,
)
def test_every_write_path_invalidates(shared_cache, client_, django_assert_num_queries, write):
    product = ProductFactory(sku="W-1", price=Decimal("10.00"))
    assert cached_twice(client_, "W-1", django_assert_num_queries)["price"] == "10.00"
    write(product)
    body = get(client_, "W-1")
    assert body["price"] == "7.00"
    assert (body["prior_price"], body["discount_percent"]) == ("10.00", "30.0")


def test_stock_move_invalidates(shared_cache, client_, django_assert_num_queries):
    ProductFactory(sku="S-1", stock=10)
    cached_twice(client_, "S-1", django_assert_num_queries)
    writer = user_with("change_product")
    response = ApiClient(create_token(writer, "w")[1]).post(
        "/api/products/S-1/stock", {"delta": -4}
    )
    assert response.status_code in (200, 201), response.content
    assert get(client_, "S-1")["stock"] == 6


@pytest.mark.parametrize("how", ["instance", "queryset", "pipeline"])
def test_delete_invalidates(shared_cache, client_, django_assert_num_queries, how):
    product = ProductFactory(sku="D-1")
    cached_twice(client_, "D-1", django_assert_num_queries)
    if how == "instance":
        product.delete()
    elif how == "queryset":
        Product.objects.filter(sku="D-1").delete()
    else:
        process_pipeline({"steps": [{"op": "delete_products", "skus": ["D-1"]}]})
    assert_error_shape(client_.get("/api/products/D-1"), 404)


def test_rename_invalidates_the_old_sku(shared_cache, client_, django_assert_num_queries):
    product = ProductFactory(sku="OLD-1")
    cached_twice(client_, "OLD-1", django_assert_num_queries)
    product.sku = "NEW-1"
    product.save()
    assert_error_shape(client_.get("/api/products/OLD-1"), 404)
    assert get(client_, "NEW-1")["sku"] == "NEW-1"


def test_bulk_update_of_many_products_invalidates_all(shared_cache, client_):
    Product.objects.bulk_create(
        [Product(sku=f"B-{i:04d}", name="b", price=Decimal("1.00")) for i in range(2500)]
    )
    probes = ["B-0000", "B-0999", "B-1000", "B-2499"]
    for sku in probes:
        get(client_, sku)
    assert all(cache.get(product_cache.key_for(sku)) for sku in probes)
    assert Product.objects.filter(sku__startswith="B-").update(price=Decimal("2.00")) == 2500
    assert [get(client_, sku)["price"] for sku in probes] == ["2.00"] * 4


def test_invalidation_waits_for_commit_and_reads_own_writes(shared_cache, client_):
    """Before commit other processes still read the old row, so the entry may stay; the
    writing transaction itself bypasses it; the commit invalidates it for everyone."""
    skus = [f"T-{i:03d}" for i in range(cache_guard.EAGER_KEYS + 50)]
    Product.objects.bulk_create([Product(sku=s, name="t", price=Decimal("1.00")) for s in skus])
    for sku in skus:
        get(client_, sku)
    with transaction.atomic():
        Product.objects.filter(sku__in=skus).update(price=Decimal("3.00"))
        # Only the first EAGER_KEYS keys are tombstoned before commit; the rest still hold
        # the old body, which is what other connections still read from the database.
        entries = {sku: cache.get(product_cache.key_for(sku)) for sku in skus}
        waiting = [sku for sku, value in entries.items() if value != cache_guard.TOMBSTONE]
        assert len(waiting) == len(skus) - cache_guard.EAGER_KEYS
        assert get(client_, waiting[0])["price"] == "3.00"  # same connection: own writes
    assert {cache.get(product_cache.key_for(sku)) for sku in skus} == {cache_guard.TOMBSTONE}
    assert get(client_, waiting[0])["price"] == "3.00"


def test_rolled_back_savepoint_keeps_outer_invalidation(shared_cache, client_):
    a, b = ProductFactory(sku="SP-A"), ProductFactory(sku="SP-B")
    get(client_, "SP-A"), get(client_, "SP-B")
    # More than EAGER_KEYS keys first, so SP-A is only invalidated by the commit callback.
    fillers = [f"F-{i:03d}" for i in range(cache_guard.EAGER_KEYS)]
    with transaction.atomic():
        product_cache.invalidate(fillers)
        a.price = Decimal("4.00")
        a.save()
        try:
            with transaction.atomic():
                b.price = Decimal("5.00")
                b.save()
                raise RuntimeError("roll the savepoint back")
        except RuntimeError:
            pass
        b.refresh_from_db()
        b.price = Decimal("6.00")
        b.save()
    assert get(client_, "SP-A")["price"] == "4.00"
    assert get(client_, "SP-B")["price"] == "6.00"


def test_a_reader_cannot_store_what_a_commit_invalidated(shared_cache):
    """The race: miss, read the old row, a write commits and invalidates, then fill."""
    key = product_cache.key_for("RACE-1")
    value, ticket = cache_guard.get(key)
    assert value is None and ticket is not None
    product_cache.invalidate(["RACE-1"])  # the write's commit (autocommit here)
    cache_guard.fill(ticket, b"old body", 60)
    assert cache_guard.get(key) == (None, None)  # tombstone: read the database, no fill
    # After the tombstone's lifetime a late fill is refused by its age instead.
    cache.delete(key)
    value, ticket = cache_guard.get(key)
    ticket.started -= cache_guard.MAX_FILL_DELAY + 1
    cache_guard.fill(ticket, b"old body", 60)
    assert cache.get(key) is None


def test_a_short_write_is_tombstoned_once_and_still_refuses_a_stale_fill(shared_cache):
    """The eager tombstone outlives a commit made within MAX_FILL_DELAY of it, so the commit
    writes no second one; a reader that missed before the write still cannot fill."""
    key = product_cache.key_for("ONCE-1")
    _, ticket = cache_guard.get(key)  # a reader misses, then reads the old row
    with transaction.atomic():
        product_cache.invalidate(["ONCE-1"])  # eager: the tombstone is written now
        assert cache.get(key) == cache_guard.TOMBSTONE
    cache_guard.fill(ticket, b"old body", 60)  # after the commit: refused
    assert cache_guard.get(key) == (None, None)
    # No second tombstone at commit: what Redis held before the commit is still there.
    raw = redis.Redis.from_url(REDIS["LOCATION"])
    with transaction.atomic():
        product_cache.invalidate(["ONCE-1"])
        raw.set(cache.make_key(key), b"marker")
    assert raw.get(cache.make_key(key)) == b"marker"


def test_a_commit_long_after_the_eager_tombstone_tombstones_again(shared_cache):
    key = product_cache.key_for("LONG-1")
    with transaction.atomic():
        product_cache.invalidate(["LONG-1"])
        batch = oncommit.current("default", cache_guard._Batch)
        batch.tombstoned[key] -= cache_guard.MAX_FILL_DELAY  # as if sent that long ago
        cache.delete(key)
    assert cache.get(key) == cache_guard.TOMBSTONE


def test_a_failed_eager_tombstone_is_written_at_commit(shared_cache):
    """Redis unreachable for the eager tombstone (logged), back by the commit."""
    key = product_cache.key_for("FAIL-1")
    with transaction.atomic():
        with override_settings(CACHES={"default": DOWN}):
            product_cache.invalidate(["FAIL-1"])
        batch = oncommit.current("default", cache_guard._Batch)
        assert key in batch.keys and key not in batch.tombstoned
    assert cache.get(key) == cache_guard.TOMBSTONE


def test_a_hold_invalidates_the_cached_body(shared_cache, client_, django_assert_num_queries):
    ProductFactory(sku="HOLD-1", stock=5)
    assert cached_twice(client_, "HOLD-1", django_assert_num_queries)["available"] == 5
    holder = ApiClient(create_token(user_with("add_reservation"), "h")[1])
    response = holder.post("/api/reservations", {"sku": "HOLD-1", "quantity": 2})
    assert response.status_code == 201, response.content
    assert get(client_, "HOLD-1")["available"] == 3


def _history(product, *changes):
    """Rewrite ``product``'s history as (days_ago, old, new) steps."""
    now = timezone.now()
    PriceHistory.objects.filter(product=product).delete()
    for ago, old, new in changes:
        PriceHistory.objects.create(
            product=product,
            sku=product.sku,
            name=product.name,
            old_price=Decimal(old),
            new_price=Decimal(new),
            changed_at=now - ago,
        )


def test_entry_expires_when_the_reduction_ends(shared_cache, client_):
    product = ProductFactory(sku="OM-1", price=Decimal("80.00"))
    _history(product, (timedelta(days=30) - timedelta(seconds=20), "100.00", "80.00"))
    body = get(client_, "OM-1")
    assert (body["prior_price"], body["discount_percent"]) == ("100.00", "20.0")
    ttl = cache._cache.get_client().ttl(cache.make_key(product_cache.key_for("OM-1")))
    assert 0 < ttl <= 20


def test_stepped_reduction_is_capped_by_its_latest_step(shared_cache, client_):
    product = ProductFactory(sku="OM-2", price=Decimal("80.00"))
    _history(
        product,
        (timedelta(days=35), "100.00", "90.00"),
        (timedelta(days=10), "90.00", "80.00"),
    )
    assert get(client_, "OM-2")["prior_price"] == "100.00"
    ttl = cache._cache.get_client().ttl(cache.make_key(product_cache.key_for("OM-2")))
    assert product_cache.MAX_AGE - 5 <= ttl <= product_cache.MAX_AGE


def test_no_reduction_is_cached_for_max_age(shared_cache, client_):
    ProductFactory(sku="OM-3")
    get(client_, "OM-3")
    ttl = cache._cache.get_client().ttl(cache.make_key(product_cache.key_for("OM-3")))
    assert product_cache.MAX_AGE - 5 <= ttl <= product_cache.MAX_AGE


# --- tokens -------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["api", "service", "delete", "deactivate_user"])
def test_revocation_is_immediate(
    shared_cache, client_, reader_token, django_assert_num_queries, how
):
    ProductFactory(sku="R-1")
    cached_twice(client_, "R-1", django_assert_num_queries)  # the token is cached too
    token, _ = reader_token
    if how == "api":
        assert client_.delete(f"/api/tokens/{token.pk}").status_code == 204
    elif how == "service":
        revoke_token(ApiToken.objects.get(pk=token.pk))
    elif how == "delete":
        ApiToken.objects.filter(pk=token.pk).delete()
    else:
        token.user.is_active = False
        token.user.save()
    assert_error_shape(client_.get("/api/products/R-1"), 401)


def test_revocation_inside_a_transaction_is_immediate_for_that_transaction(
    shared_cache, client_, reader_token
):
    ProductFactory(sku="R-2")
    get(client_, "R-2")
    with transaction.atomic():
        revoke_token(reader_token[0])
        assert_error_shape(client_.get("/api/products/R-2"), 401)
    assert_error_shape(client_.get("/api/products/R-2"), 401)


def test_cached_identity_holds_no_secret(shared_cache, client_, reader_token):
    ProductFactory(sku="R-3")
    get(client_, "R-3")
    token, raw = reader_token
    raw_entry = cache._cache.get_client().get(cache.make_key(cache_key(raw)))
    assert raw_entry is not None
    assert token.user.password.encode() not in raw_entry
    assert raw.encode() not in raw_entry


def test_last_used_is_written_at_most_once_a_minute(shared_cache, client_, reader_token):
    ProductFactory(sku="R-4")
    token, raw = reader_token
    get(client_, "R-4")
    first = ApiToken.objects.get(pk=token.pk).last_used_at
    assert first is not None
    get(client_, "R-4")
    assert ApiToken.objects.get(pk=token.pk).last_used_at == first
    # The entry lives until the next write is due, so the next miss records the use.
    ttl = cache._cache.get_client().ttl(cache.make_key(cache_key(raw)))
    assert 0 < ttl <= 60
    # A token used 30 s ago (by another process, say) is cached only for the 30 s left.
    cache.clear()
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(seconds=30))
    get(client_, "R-4")
    assert ApiToken.objects.get(pk=token.pk).last_used_at < timezone.now() - timedelta(seconds=29)
    ttl = cache._cache.get_client().ttl(cache.make_key(cache_key(raw)))
    assert 0 < ttl <= 31


def test_redis_reads_survive_dropped_connections(shared_cache):
    """stockpipe.cache reads through its own tracking connection, outside redis-py's retry
    wrapper: connections the server closed (here: all of them, killed) must not fail reads."""
    cache.set_many({"k:1": b"one", "k:2": ("two", 2)})
    assert cache.get_many(["k:1", "k:2", "k:3"]) == {"k:1": b"one", "k:2": ("two", 2)}
    admin = redis.Redis.from_url(REDIS["LOCATION"])
    killed = admin.client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    assert cache.get("k:1") == b"one"
    admin.client_kill_filter(_type="normal", skipme=True)
    assert cache.get_many(["k:2", "k:3"]) == {"k:2": ("two", 2)}
    assert cache.get("k:3", "default") == "default"
    admin.close()
