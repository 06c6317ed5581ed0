"""Several machines: N web processes and M task workers that share nothing but the addresses
of the database (through PgBouncer when the suite runs behind it), Redis and the SMTP server,
each started as deploy/run starts it, with production settings (README, Deployment)."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import pytest
import redis
from django.contrib.auth.models import Permission, User
from django.db.models import Count, Sum

from app.models import DeliveryStatus, PipelineRun, Product, StockAlert, StockMovement
from app.services.tokens import create_token
from tests.factories import ProductFactory
from tests.reliability.conftest import (
    CACHE_REDIS_URL,
    ROOT,
    Processes,
    both_task_backends,
    wait_until,
)
from tests.smtp import free_port

pytestmark = pytest.mark.django_db(transaction=True)

WEB_MACHINES = 2  # each a gunicorn with WEB_CONCURRENCY=2 sync workers
WORKER_MACHINES = 2
CLIENTS = 3
SECONDS = "15"


def machine_env(processes: Processes, name: str) -> dict[str, str]:
    """What a machine of the deployment has of its own: its run and static directories.
    Everything else is the same address on every machine."""
    run_dir = processes.log_dir / name
    run_dir.mkdir()
    return {
        "DJANGO_SETTINGS_MODULE": "stockpipe.settings.production",
        "SECRET_KEY": "several-machines-" + "s3cr3t-" * 8,
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "SECURE_SSL_REDIRECT": "false",  # no nginx (TLS) in front of gunicorn here
        "GUNICORN_ACCESS_LOG_MIN_MS": "0",  # no nginx's log either: gunicorn logs each request
        "CACHE_URL": CACHE_REDIS_URL,
        "STOCKPIPE_RUN_DIR": str(run_dir),
        "STATIC_ROOT": str(run_dir / "static"),
    }


def start_web_machine(processes: Processes, name: str) -> str:
    port = free_port()
    processes.start(
        "-m",
        "gunicorn",
        "-c",
        str(ROOT / "deploy" / "gunicorn.conf.py"),
        log=name,
        STOCKPIPE_GUNICORN_BIND=f"127.0.0.1:{port}",
        WEB_CONCURRENCY="2",
        **machine_env(processes, name),
    )
    url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        try:
            urllib.request.urlopen(f"{url}/api/openapi.json", timeout=2)
            return True
        except OSError:
            return False

    wait_until(answers, timeout=60, message=f"{name} to answer")
    return url


@both_task_backends
def test_web_and_worker_machines_share_only_addresses(processes, smtp_server, task_backend):
    redis.Redis.from_url(CACHE_REDIS_URL).flushdb()
    for i in range(20):
        ProductFactory(sku=f"M-{i:02d}", price=Decimal("10.00"), stock=11, low_stock_threshold=10)
    user = User.objects.create_user("machines", "", "pw-for-tests-1")
    user.user_permissions.add(
        *Permission.objects.filter(codename__in=["change_product", "run_pipeline"])
    )
    token = create_token(user, "machines")[1]

    urls = [start_web_machine(processes, f"web{n}") for n in range(WEB_MACHINES)]
    for n in range(WORKER_MACHINES):
        processes.worker(**machine_env(processes, f"worker{n}"))
    outputs = processes.actors(
        [
            [
                "machines_client",
                ",".join(urls),
                token,
                SECONDS,
                str(k),
                ",".join(f"M-{i:02d}" for i in range(20) if i % CLIENTS == k),
            ]
            for k in range(CLIENTS)
        ]
    )
    counts: dict[str, int] = {}
    for out in outputs:
        for kind, n in json.loads(out.strip().rsplit("counts=", 1)[1]).items():
            counts[kind] = counts.get(kind, 0) + n
    print(counts)
    assert counts.get("price:200", 0) > 0  # each read back fresh from another machine
    queued = counts["pipeline:202"]

    def settled() -> bool:
        runs = PipelineRun.objects.exclude(status__in=["succeeded", "failed"]).exists()
        alerts = StockAlert.objects.filter(delivery_status=DeliveryStatus.PENDING).exists()
        return not runs and not alerts

    wait_until(settled, timeout=180, interval=0.5, message="the workers to finish")

    assert PipelineRun.objects.count() == queued
    assert PipelineRun.objects.filter(status="succeeded").exists()
    for run in PipelineRun.objects.filter(status="failed"):
        assert run.error["kind"] == "failed", run.error  # stock would drop below zero
    for product in Product.objects.all():
        ledger = StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"]
        assert ledger == product.stock >= 0, product.sku
        open_alerts = StockAlert.objects.filter(product=product, resolved_at__isnull=True).count()
        assert open_alerts == (1 if product.is_low_stock else 0), product.sku
    assert not (
        StockAlert.objects.values("product")
        .filter(resolved_at__isnull=True)
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .exists()
    )
    alerts = StockAlert.objects.count()
    assert alerts > 0
    assert StockAlert.objects.filter(delivery_status=DeliveryStatus.SENT).count() == alerts
    message_ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(message_ids) == alerts == len(set(message_ids))  # each alert sent once
    for n in range(WEB_MACHINES):  # every web machine served its share
        log = next(processes.log_dir.glob(f"*-web{n}.log")).read_text()
        assert '"POST /api/' in log
