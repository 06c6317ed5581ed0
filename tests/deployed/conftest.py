"""End-to-end checks against a running deployment (scripts/test-deployed starts it).

They talk to the stack only over HTTPS through nginx, read the mail its worker sent from the
SMTP sink's directory, and create accounts with ``manage.py shell`` run against the stack's
own database and settings. Without ``STOCKPIPE_DEPLOYED_URL`` they are deselected.

Environment (set by scripts/test-deployed): STOCKPIPE_DEPLOYED_URL (https://host:port),
STOCKPIPE_DEPLOYED_CA (the certificate to trust), STOCKPIPE_DEPLOYED_ENV (a file of the
stack's KEY=VALUE environment), STOCKPIPE_DEPLOYED_MAILDIR (the SMTP sink's directory).
"""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
URL = os.environ.get("STOCKPIPE_DEPLOYED_URL", "")


def pytest_collection_modifyitems(config, items):
    here = [item for item in items if Path(str(item.fspath)).parent == Path(__file__).parent]
    for item in here:
        item.add_marker(pytest.mark.deployed)
    if not URL and here:
        config.hook.pytest_deselected(items=here)
        items[:] = [item for item in items if item not in here]


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Stack:
    url: str
    tls: ssl.SSLContext
    env: dict[str, str]
    maildir: Path
    run: str = field(default_factory=lambda: str(int(time.time() * 1000))[-9:])

    def request(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: dict | bytes | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        opener = urllib.request.build_opener(
            urllib.request.HTTPSHandler(context=self.tls), _NoRedirect()
        )
        try:
            with opener.open(request, timeout=60) as r:
                return Response(r.status, dict(r.headers.items()), r.read())
        except urllib.error.HTTPError as error:
            return Response(error.code, dict(error.headers.items()), error.read())

    def manage_shell(self, code: str) -> str:
        """Run Python in ``manage.py shell`` with the stack's settings and database."""
        proc = subprocess.run(
            [sys.executable, "manage.py", "shell", "-v0", "-c", code],
            cwd=ROOT,
            env={**os.environ, **self.env},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    def mail(self) -> list[EmailMessage]:
        return [
            message_from_bytes(p.read_bytes(), policy=policy.default)
            for p in sorted(self.maildir.glob("*.eml"))
        ]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


def _read_env(path: str) -> dict[str, str]:
    pairs = (line.split("=", 1) for line in Path(path).read_text().splitlines() if "=" in line)
    return {key: value for key, value in pairs}


@pytest.fixture(scope="session")
def stack() -> Stack:
    return Stack(
        url=URL.rstrip("/"),
        tls=ssl.create_default_context(cafile=os.environ["STOCKPIPE_DEPLOYED_CA"]),
        env=_read_env(os.environ["STOCKPIPE_DEPLOYED_ENV"]),
        maildir=Path(os.environ["STOCKPIPE_DEPLOYED_MAILDIR"]),
    )


ACCOUNTS = """
import json
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from app.services.tokens import create_token

ROLES = {ROLES!r}
out = {{}}
for role, codenames in ROLES.items():
    user = get_user_model().objects.create_user(
        f"{{role}}-{RUN}", f"{{role}}-{RUN}@example.com", "{PASSWORD}"
    )
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    assert not user.is_staff and not user.is_superuser
    out[role] = {{"username": user.username, "token": create_token(user, "e2e")[1]}}
print(json.dumps(out))
"""
PASSWORD = "e2e-password-7Qx!"
ROLES = {
    "reader": [],
    "editor": ["add_product", "change_product"],
    "operator": ["run_pipeline"],
    "integrator": ["add_webhooksubscription", "view_webhooksubscription", "view_webhookdelivery"],
    "exporter": ["view_product"],
}


@pytest.fixture(scope="session")
def accounts(stack: Stack) -> dict[str, dict[str, str]]:
    """One ordinary user (neither staff nor superuser) per role, holding only the
    permissions the role needs, each with an API token."""
    code = ACCOUNTS.format(ROLES=ROLES, RUN=stack.run, PASSWORD=PASSWORD)
    return json.loads(stack.manage_shell(code).strip().splitlines()[-1])


def wait_for(predicate, timeout: float, message: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {message}")
