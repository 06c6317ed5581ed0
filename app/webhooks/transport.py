"""Outgoing HTTP for webhooks: one POST, no redirects, and only to vetted addresses.

The destination's name is resolved once, before any connection. If an address it resolves
to is not public (loopback, private, link-local, ...), the request is refused without
connecting, so a refused destination looks the same whether anything listens there or not.
Otherwise the socket connects to the address that was checked, so a name that resolves to
a public address when checked and to an internal one a moment later (DNS rebinding) cannot
slip through; the Host header, TLS SNI and certificate check still use the name.
``STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS`` lifts the rule, for receivers inside your own
network.
"""

from __future__ import annotations

import datetime
import email.utils
import http.client
import ipaddress
import socket
import time
import urllib.error
import urllib.request
from typing import Any

from .. import conf


class BlockedDestination(ValueError):
    """The webhook URL leads where webhooks may not go (dead-lettered at once)."""


def _allow_private() -> bool:
    return conf.webhook_allow_private_networks()


def _timeout() -> float:
    return conf.webhook_timeout()


_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The address, or the IPv4 address an IPv6 one carries (mapped, 6to4, NAT64,
    IPv4-compatible): what the packets finally reach is what must be public."""
    address = ipaddress.ip_address(text)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped:
            return address.ipv4_mapped
        if address.sixtofour:
            return address.sixtofour
        if address in _NAT64 or 1 < int(address) < 2**32:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def is_public(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_global and not address.is_multicast


def vetted_addresses(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, if webhooks may reach every one of them.

    Raises ``BlockedDestination`` (without connecting anywhere) otherwise, with a message
    that depends on the address only, never on what listens there.
    """
    if not 0 < port < 65536:  # getaddrinfo would silently wrap 99999 to another port
        raise BlockedDestination(f"refused to connect to port {port}: not a valid port")
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not _allow_private():
        for text in addresses:
            address = _ip(text.partition("%")[0])
            if not is_public(address):
                raise BlockedDestination(
                    f"refused to connect to {address}: not a public address "
                    "(set STOCKPIPE_WEBHOOK_ALLOW_PRIVATE_NETWORKS to allow it)"
                )
    return addresses


def connect_vetted(
    address: tuple[str, int], timeout: Any, source_address: Any = None
) -> socket.socket:
    """``socket.create_connection`` that only connects to vetted addresses of the name."""
    host, port = address
    error: OSError | None = None
    for ip in vetted_addresses(host, port):
        try:
            return socket.create_connection((ip, port), timeout, source_address)
        except OSError as exc:
            error = exc
    raise error or OSError(f"no address found for {host}")


class _VettedConnection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = connect_vetted


class _VettedHTTPSConnection(http.client.HTTPSConnection):
    """TLS starts on the vetted socket, with the URL's name for SNI and the certificate."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._create_connection = connect_vetted


class _VettedHTTPHandler(urllib.request.HTTPHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_VettedConnection, req, **kwargs)


class _VettedHTTPSHandler(urllib.request.HTTPSHandler):
    def do_open(self, http_class, req, **kwargs):
        return super().do_open(_VettedHTTPSConnection, req, **kwargs)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an answer, not a new target: the signed POST is never re-sent elsewhere."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def _opener() -> urllib.request.OpenerDirector:
    """No proxy, whatever the environment says (HTTP_PROXY...): through a proxy the address
    check would vet the proxy, not the destination, and the proxy would fetch anything."""
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), _NoRedirects, _VettedHTTPHandler, _VettedHTTPSHandler
    )


def retry_after_seconds(value: str | None, now: float | None = None) -> float:
    """A ``Retry-After`` value in seconds from ``now``: delay-seconds (``120``) or an
    HTTP-date (``Fri, 04 Dec 2026 22:00:00 GMT``); 0 when absent, unreadable or past."""
    text = (value or "").strip()
    if text.isdigit():
        return float(text)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return 0.0
    if when.tzinfo is None:  # an HTTP-date is always GMT
        when = when.replace(tzinfo=datetime.UTC)
    current = time.time() if now is None else now
    return max(when.timestamp() - current, 0.0)


def post(url: str, body: bytes, headers: dict[str, str]) -> tuple[int, str, float]:
    """POST ``body``; return (status code, first 2000 characters of the answer, the
    answer's Retry-After in seconds or 0).

    The timeout (``STOCKPIPE_WEBHOOK_TIMEOUT``) bounds the connection and then each wait
    for the answer. Raises ``BlockedDestination`` for a destination webhooks may not reach,
    ``OSError`` (``TimeoutError`` included) / ``http.client.HTTPException`` on network errors.
    """
    if not url.lower().startswith(("http://", "https://")):
        raise BlockedDestination(f"Not an http(s) URL: {url!r}")
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _opener().open(request, timeout=_timeout()) as response:
            return response.status, response.read(2000).decode("utf-8", "replace"), 0.0
    except urllib.error.HTTPError as exc:
        with exc:
            text = exc.read(2000).decode("utf-8", "replace") if exc.fp else ""
        retry_after = exc.headers.get("Retry-After") if exc.headers else None
        return exc.code, text, retry_after_seconds(retry_after)
