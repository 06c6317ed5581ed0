"""Render deploy/nginx.conf.template for deploy/run and print it.

Usage: python deploy/render_nginx.py RUN_DIR TLS_CERT TLS_KEY
Environment: STOCKPIPE_HTTP_PORT (80), STOCKPIPE_HTTPS_PORT (443), STOCKPIPE_GUNICORN_BIND
(127.0.0.1:8000), STOCKPIPE_REQUEST_TIMEOUT (120), and the Django settings of the stack
(the body limit is read from them, so nginx and Django agree on it).
"""

from __future__ import annotations

import os
import re
import socket
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE = ROOT / "deploy" / "nginx.conf.template"


def client_max_body_size() -> int:
    """The largest request body Django accepts (``InputGuardMiddleware``): a multipart
    upload of MAX_UPLOAD_BYTES plus DATA_UPLOAD_MAX_MEMORY_SIZE of form fields. Anything
    larger nginx refuses with 413 itself."""
    import django

    sys.path.insert(0, str(ROOT))
    django.setup()
    from django.conf import settings

    from app.core.inputs import MAX_UPLOAD_BYTES

    return (settings.DATA_UPLOAD_MAX_MEMORY_SIZE or 0) + MAX_UPLOAD_BYTES


def ipv6_available() -> bool:
    """Listen on IPv6 too, unless this host has no IPv6 (nginx would refuse to start)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::", 0))
        return True
    except OSError:
        return False


def render(run_dir: str, cert: str, key: str) -> str:
    https_port = os.environ.get("STOCKPIPE_HTTPS_PORT", "443")
    values = {
        "RUN_DIR": run_dir,
        "TLS_CERT": cert,
        "TLS_KEY": key,
        "HTTP_PORT": os.environ.get("STOCKPIPE_HTTP_PORT", "80"),
        "HTTPS_PORT": https_port,
        "HTTPS_PORT_SUFFIX": "" if https_port == "443" else f":{https_port}",
        "GUNICORN_BIND": os.environ.get("STOCKPIPE_GUNICORN_BIND", "127.0.0.1:8000"),
        "PROXY_READ_TIMEOUT": str(int(os.environ.get("STOCKPIPE_REQUEST_TIMEOUT", "120")) + 10),
        "CLIENT_MAX_BODY_SIZE": str(client_max_body_size()),
        "IPV6": "" if ipv6_available() else "# no IPv6 on this host: ",
        # Started as root, nginx's workers drop to Debian's web server user.
        "USER_DIRECTIVE": "user www-data;" if os.geteuid() == 0 else "",
    }
    text = TEMPLATE.read_text()
    rendered = re.sub(r"@@([A-Z0-9_]+)@@", lambda m: values[m.group(1)], text)
    return rendered


if __name__ == "__main__":
    sys.stdout.write(render(*sys.argv[1:4]))
