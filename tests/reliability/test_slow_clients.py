"""Slow clients cannot take the service down (issue 12, finding 5).

Twenty sockets send their request head one byte at a time for 30 seconds (reconnecting
whenever the server drops them) while a normal client keeps requesting pages: behind the
shipped nginx every normal request is answered, p99 under 1 s. Against gunicorn's sync
workers bound directly (the old README), the same load answered nothing: each worker sat
reading one slow socket.
"""

from __future__ import annotations

import math
import socket
import ssl
import threading
import time
import urllib.parse

import pytest

from tests.reliability import deployment

pytestmark = pytest.mark.django_db(transaction=True)

SLOW_SOCKETS = 20
SECONDS = 30.0


class SlowClients:
    """``count`` threads, each keeping one connection that never finishes its headers."""

    def __init__(self, url: str, tls: ssl.SSLContext | None, count: int) -> None:
        parts = urllib.parse.urlsplit(url)
        self.host, self.port = parts.hostname, parts.port
        self.tls = tls if parts.scheme == "https" else None
        self.count = count
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.open = 0
        self.min_open_after_ramp: int | None = None
        self.connections = 0
        self.bytes_sent = 0
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(count)]

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=5)
        if self.tls is not None:
            sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        sock.sendall(f"GET /accounts/login/ HTTP/1.1\r\nHost: {self.host}\r\nX-Slow: ".encode())
        return sock

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                sock = self._connect()
            except OSError:
                time.sleep(0.2)
                continue
            with self.lock:
                self.open += 1
                self.connections += 1
            try:
                while not self.stop.wait(0.5):
                    sock.sendall(b"a")  # one byte of a header that never ends
                    with self.lock:
                        self.bytes_sent += 1
            except OSError:
                pass  # the server dropped us (its header timeout): come back at once
            finally:
                with self.lock:
                    self.open -= 1
                sock.close()

    def __enter__(self) -> SlowClients:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=10)


def measure_under_slow_clients(url: str, get, tls: ssl.SSLContext | None) -> dict:
    """Hold the slow sockets for SECONDS while ``get(path)`` requests pages one after another;
    return latencies (a failed or timed-out request counts as its full time) and errors."""
    latencies: list[float] = []
    errors: list[str] = []
    with SlowClients(url, tls, SLOW_SOCKETS) as slow:
        time.sleep(2.0)  # let every slow socket connect and start dribbling
        opened = slow.open
        deadline = time.monotonic() + SECONDS
        paths = ["/accounts/login/", "/static/app/app.css"]
        i = 0
        while time.monotonic() < deadline:
            path = paths[i % len(paths)]
            i += 1
            began = time.monotonic()
            try:
                status, _ = get(path)
                if status != 200:
                    errors.append(f"{path}: {status}")
            except Exception as exc:
                errors.append(f"{path}: {exc!r}")
            latencies.append(time.monotonic() - began)
            time.sleep(0.05)
        bytes_sent = slow.bytes_sent
    latencies.sort()
    p99 = latencies[max(0, math.ceil(0.99 * len(latencies)) - 1)]
    return {
        "requests": len(latencies),
        "p99": p99,
        "max": latencies[-1],
        "errors": errors,
        "slow_open_at_start": opened,
        "slow_bytes": bytes_sent,
    }


def test_twenty_slow_clients_do_not_delay_normal_requests(tmp_path):
    stack = deployment.start(tmp_path)
    try:
        result = measure_under_slow_clients(stack.url, stack.get, stack.tls)
    finally:
        stack.stop()
    print(result)
    assert result["slow_open_at_start"] == SLOW_SOCKETS, result
    assert result["slow_bytes"] >= SLOW_SOCKETS * SECONDS, result  # they kept dribbling
    assert not result["errors"], result
    assert result["requests"] >= 100, result
    assert result["p99"] < 1.0, result
