"""A bounded soak: API writes, ORM writes, pipelines and alert delivery at once, then an
invariant check of the whole database."""

from __future__ import annotations

import itertools
import os
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission, User
from django.db.models import Count, F, Q, Sum

from app.models import DeliveryStatus, PipelineRun, PriceHistory, Product, StockAlert, StockMovement
from app.services.tokens import create_token
from tests.factories import ProductFactory
from tests.reliability.conftest import wait_until

pytestmark = pytest.mark.django_db(transaction=True)

SOAK_SECONDS = os.environ.get("SOAK_SECONDS", "90")


def test_soak_keeps_every_invariant(processes, smtp_server):
    for i in range(20):
        ProductFactory(
            sku=f"SOAK-{i:02d}", price=Decimal("10.00"), stock=30, low_stock_threshold=10
        )
    user = User.objects.create_user("soak", "", "pw-for-tests-1")
    user.user_permissions.add(Permission.objects.get(codename="change_product"))
    token = create_token(user, "soak")[1]
    url = processes.web(workers=2)
    worker = processes.worker()
    outputs = processes.actors(
        [
            ["soak_api", url, token, SOAK_SECONDS, "1"],
            ["soak_api", url, token, SOAK_SECONDS, "2"],
            ["soak_orm", SOAK_SECONDS, "3"],
            ["soak_pipelines", SOAK_SECONDS, "4"],
        ]
    )
    print("\n".join(outputs))
    wait_until(
        lambda: not StockAlert.objects.filter(delivery_status=DeliveryStatus.PENDING).exists(),
        timeout=120,
        message="every alert delivered",
    )
    processes.stop(worker)

    products = list(Product.objects.all())
    for product in products:
        ledger = StockMovement.objects.filter(product=product).aggregate(s=Sum("delta"))["s"]
        assert ledger == product.stock, product.sku
        chain = list(
            PriceHistory.objects.filter(product=product)
            .order_by("id")
            .values_list("old_price", "new_price")
        )
        assert chain[0][0] == Decimal("10.00")
        for (_, previous_new), (old, _) in itertools.pairwise(chain):
            assert old == previous_new, product.sku
        assert chain[-1][1] == product.price
        open_alerts = StockAlert.objects.filter(product=product, resolved_at__isnull=True).count()
        assert open_alerts == (1 if product.is_low_stock else 0), product.sku
    assert (
        not StockAlert.objects.values("product")
        .filter(resolved_at__isnull=True)
        .annotate(n=Count("id"))
        .filter(n__gt=1)
        .exists()
    )
    alerts = StockAlert.objects.count()
    assert (
        alerts > 0
        and StockAlert.objects.filter(delivery_status=DeliveryStatus.SENT).count() == alerts
    )
    message_ids = [m["Message-ID"] for m in smtp_server.messages]
    assert len(message_ids) == alerts == len(set(message_ids))
    assert not PipelineRun.objects.filter(status__in=["pending", "running"]).exists()
    assert PipelineRun.objects.filter(status="succeeded").exists()
    assert not Product.objects.filter(Q(stock__lt=0) | Q(price__lt=0)).exists()
    assert (
        Product.objects.filter(stock__lt=F("low_stock_threshold")).count()
        == StockAlert.objects.filter(resolved_at__isnull=True).count()
    )
