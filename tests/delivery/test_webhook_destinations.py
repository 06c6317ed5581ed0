"""Issue 12, finding 10: a refused webhook destination is refused before connecting.

The name is resolved and every address vetted first, so a refused destination gives the
same recorded error whether anything listens there or not, and a listener never sees a
connection. Allowed destinations are reached at the vetted address with the URL's name in
the Host header.
"""

import socket
from decimal import Decimal

import pytest

from app.models import WebhookDelivery
from app.webhooks import transport
from tests.factories import ProductFactory

pytestmark = pytest.mark.django_db
Status = WebhookDelivery.Status


def set_price(product, price):
    product.price = Decimal(price)
    product.save()


@pytest.fixture
def listener():
    """A TCP port that accepts connections (into its backlog) but never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    sock.setblocking(False)
    yield sock
    sock.close()


def closed_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def outcome(delivery):
    delivery.refresh_from_db()
    log = list(delivery.attempt_log.values_list("number", "status_code", "error", "response_body"))
    return (
        delivery.status,
        delivery.attempts,
        delivery.last_status_code,
        delivery.last_error,
        delivery.next_attempt_at,
        log,
    )


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_refused_address_looks_the_same_whether_a_port_listens_or_not(
    subscribe, deliver, settings, listener, scheme
):
    settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    open_port = listener.getsockname()[1]
    subscribe(events=["price.changed"], url=f"{scheme}://127.0.0.1:{open_port}/hooks", name="open")
    subscribe(
        events=["price.changed"], url=f"{scheme}://127.0.0.1:{closed_port()}/hooks", name="closed"
    )
    set_price(ProductFactory(), "11.00")
    deliver()
    to_open = WebhookDelivery.objects.get(subscription__name="open")
    to_closed = WebhookDelivery.objects.get(subscription__name="closed")
    assert outcome(to_open) == outcome(to_closed)
    assert to_open.status == Status.DEAD and to_open.attempts == 1
    assert "refused to connect to 127.0.0.1: not a public address" in to_open.last_error
    with pytest.raises(BlockingIOError):  # nothing ever connected to the listener
        listener.accept()


def test_a_name_is_vetted_by_its_addresses_and_sent_with_its_host_header(
    receiver, subscribe, deliver, settings
):
    port = receiver.server.server_address[1]
    url = f"http://localhost:{port}/hooks"
    settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    subscribe(events=["product.created"], url=url, name="refused")
    ProductFactory()
    deliver()
    refused = WebhookDelivery.objects.get()
    assert refused.status == Status.DEAD and "not a public address" in refused.last_error
    assert receiver.requests == []

    settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True  # a receiver on your own network
    refused.subscription.delete()
    subscribe(events=["product.created"], url=url, name="allowed")
    ProductFactory()
    deliver()
    [request] = receiver.requests
    assert request.headers["Host"] == f"localhost:{port}"
    assert WebhookDelivery.objects.get().status == Status.DELIVERED


def test_a_port_out_of_range_is_refused_not_wrapped_onto_another_port(subscribe, deliver, settings):
    """getaddrinfo takes 99999 as 99999 % 65536: the request would reach port 34463."""
    settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = True
    wrapped = socket.socket()
    try:
        wrapped.bind(("127.0.0.1", 99999 % 65536))
    except OSError:
        wrapped.close()
        pytest.skip("port 34463 is in use on this machine")
    with wrapped:
        wrapped.listen(8)
        wrapped.setblocking(False)
        subscribe(events=["product.created"], url="http://127.0.0.1:99999/hooks")
        ProductFactory()
        deliver()
        delivery = WebhookDelivery.objects.get()
        assert delivery.status == Status.DEAD and delivery.attempts == 1
        assert "port 99999: not a valid port" in delivery.last_error
        with pytest.raises(BlockingIOError):
            wrapped.accept()


@pytest.mark.parametrize(
    "address",
    [
        "64:ff9b::a9fe:a9fe",  # NAT64 form of 169.254.169.254 (cloud metadata)
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "::ffff:10.0.0.5",  # IPv4-mapped private address
        "ff02::1",  # multicast
        "224.0.0.1",
    ],
)
def test_ipv6_forms_of_internal_addresses_and_multicast_are_refused(settings, address):
    """Refused from the literal alone: nothing is connected to, so no packet leaves."""
    settings.STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS = False
    with pytest.raises(transport.BlockedDestination, match="not a public address"):
        transport.vetted_addresses(address, 80)


def test_proxy_variables_of_the_environment_are_ignored(receiver, monkeypatch, listener):
    """Through a proxy the address check would vet the proxy, not the destination: the POST
    goes straight to the vetted destination, the proxy sees no connection."""
    proxy = f"http://127.0.0.1:{listener.getsockname()[1]}"
    for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    receiver.secret = None  # a bare POST, not a signed delivery
    status, _, _ = transport.post(
        receiver.url, b"{}", {"Content-Type": "application/json", "User-Agent": "t"}
    )
    assert status == 200
    assert len(receiver.requests) == 1
    with pytest.raises(BlockingIOError):
        listener.accept()
