"""Thin receivers: each turns a signal of ``app.signals`` into outbox rows through ``outbox``.

Connected in ``AppConfig.ready()`` with a ``dispatch_uid``. Product events are not sent
from a receiver: they are an effect of the change pipeline (``outbox.record_product_changes``),
registered before the alerts effect so that a product's own event precedes the alert event
its change causes, on every write path.
"""

from __future__ import annotations

from ..models import WebhookEvent
from ..signals import acts_when
from . import outbox


@acts_when(lambda using: bool(outbox.subscribers(WebhookEvent.STOCK_LOW, using=using)))
def alerts_opened(sender, alerts, using="default", **kwargs) -> None:
    outbox.record_alerts(WebhookEvent.STOCK_LOW, alerts, using=using)


@acts_when(lambda using: bool(outbox.subscribers(WebhookEvent.STOCK_RESTORED, using=using)))
def alerts_resolved(sender, alerts, using="default", **kwargs) -> None:
    outbox.record_alerts(WebhookEvent.STOCK_RESTORED, alerts, using=using)


def stock_transferred(sender, transfers, using="default", **kwargs) -> None:
    outbox.record_transfers(transfers, using=using)


def reservations_changed(sender, action, reservations, using="default", **kwargs) -> None:
    outbox.record_reservations(action, reservations, using=using)


def pipeline_finished(sender, run, using=None, **kwargs) -> None:
    outbox.record_pipeline_finished(run, using=using or run._state.db or "default")


def subscription_changed(sender, using=None, **kwargs) -> None:
    outbox.subscriptions_changed(using=using or "default")
