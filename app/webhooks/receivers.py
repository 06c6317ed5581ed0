"""Thin receivers: each turns a signal into outbox rows through ``outbox``.

Connected in ``AppConfig.ready()`` with a ``dispatch_uid``; the product receivers are
connected before the tracking core's, so a product's own event precedes the alert event
its change causes, on every write path.
"""

from __future__ import annotations

from ..models import WebhookEvent
from . import outbox


def product_saved(
    sender, instance, created, raw=False, using=None, update_fields=None, **kwargs
) -> None:
    if not raw:
        outbox.record_product_saved(
            instance, created=created, using=using or "default", update_fields=update_fields
        )


def product_deleted(sender, instance, using=None, **kwargs) -> None:
    outbox.record_product_deleted(instance, using=using or "default")


def alerts_opened(sender, alerts, using="default", **kwargs) -> None:
    outbox.record_alerts(WebhookEvent.STOCK_LOW, alerts, using=using)


def alerts_resolved(sender, alerts, using="default", **kwargs) -> None:
    outbox.record_alerts(WebhookEvent.STOCK_RESTORED, alerts, using=using)


def pipeline_finished(sender, run, using=None, **kwargs) -> None:
    outbox.record_pipeline_finished(run, using=using or run._state.db or "default")


def subscription_changed(sender, using=None, **kwargs) -> None:
    outbox.subscriptions_changed(using=using or "default")
