"""A real HTTP webhook receiver on 127.0.0.1 that records requests and answers as told.

Given a ``secret``, it verifies every request as a Standard Webhooks consumer does, with the
``standardwebhooks`` package itself (signature over id, timestamp and body; timestamp within
five minutes), and answers 401 to a request that fails, recording why.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook, WebhookVerificationError
from standardwebhooks.webhooks import EmptyWebhookSecretError

Answer = int | tuple[int, dict[str, str]]  # a status, or a status with response headers


class Headers(dict):
    """Request headers, looked up case-insensitively as HTTP says (urllib sends ``Webhook-Id``)."""

    def __getitem__(self, name: str) -> str:
        for key, value in self.items():
            if key.lower() == name.lower():
                return value
        raise KeyError(name)

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        try:
            return self[name]
        except KeyError:
            return default


@dataclass
class Received:
    path: str
    headers: Headers
    body: bytes
    status: int
    rejected: str | None = None  # why the standardwebhooks verifier refused it, if it did

    @property
    def json(self) -> dict:
        return json.loads(self.body)

    def verifies_with(self, secret: str) -> bool:
        """Whether the reference verifier accepts this request with ``secret`` (now)."""
        return verify_error(secret, self.body, self.headers) is None


def verify_error(secret: str, body: bytes, headers: dict[str, str]) -> str | None:
    """Why the reference verifier refuses the request with ``secret``, or None."""
    try:
        webhook = Webhook(secret)
    except (ValueError, EmptyWebhookSecretError) as exc:  # not base64 at all (binascii.Error)
        return f"unusable secret: {exc}"
    try:
        webhook.verify(body, headers)
    except WebhookVerificationError as exc:
        return str(exc)
    return None


class WebhookReceiver:
    """``statuses`` are answered in turn, then ``default``; ``respond(body)`` overrides both.

    ``secret``: verify with the standardwebhooks package, 401 on failure. ``delay``: seconds
    to wait before answering (a slow receiver).
    """

    def __init__(self, secret: str | None = None) -> None:
        self.requests: list[Received] = []
        self.statuses: list[Answer] = []
        self.default: Answer = 200
        self.respond: Callable[[dict], int | None] | None = None
        self.secret = secret
        self.delay = 0.0
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = Headers(self.headers.items())
                rejected = None
                if receiver.secret is not None:
                    rejected = verify_error(receiver.secret, body, headers)
                status, extra = (401, {}) if rejected else receiver._answer_for(body)
                with receiver._lock:
                    receiver.requests.append(Received(self.path, headers, body, status, rejected))
                if receiver.delay:
                    time.sleep(receiver.delay)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "text/plain")
                    for name, value in extra.items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(f"answered {status}".encode())
                except OSError:  # the sender gave up waiting (timeout tests)
                    pass

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _answer_for(self, body: bytes) -> tuple[int, dict[str, str]]:
        with self._lock:
            answer: Answer | None = None
            if self.respond is not None:
                answer = self.respond(json.loads(body))
            if answer is None:
                answer = self.statuses.pop(0) if self.statuses else self.default
        return answer if isinstance(answer, tuple) else (answer, {})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hooks"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, event_type: str | None = None) -> list[dict]:
        return [r.json for r in self.requests if event_type in (None, r.json["type"])]
