"""Background tasks (Django Tasks API). Thin: each one calls a domain service."""

from __future__ import annotations

import logging
import smtplib

from django.utils import timezone

try:  # Django 6 ships the Tasks API; on 5.2 the django-tasks backport provides it.
    from django.tasks import task
except ImportError:
    from django_tasks import task

from .pipelines import service as pipelines
from .pipelines import upserts
from .services import alerts, delivery, reservations, users
from .webhooks import services as webhooks

logger = logging.getLogger(__name__)


@task()
def deliver_stock_alerts(alert_ids: list[int]) -> dict[str, int]:
    outcome: dict[str, int] = {}
    for alert_id in alert_ids:
        try:
            result = alerts.deliver_alert(alert_id)
        except Exception:  # e.g. the database went away before the claim: the sweeper retries
            logger.exception("Delivery of alert %s was not attempted", alert_id)
            result = "error"
        outcome[result] = outcome.get(result, 0) + 1
    return outcome


@task()
def send_welcome_email(user_id: int, attempt: int = 1) -> bool:
    try:
        return users.send_welcome(user_id)
    except (smtplib.SMTPException, OSError):
        if attempt >= 10:
            logger.exception(
                "Welcome e-mail to user %s failed %s times, giving up", user_id, attempt
            )
            raise
        retry_at = timezone.now() + delivery.backoff(attempt)
        send_welcome_email.using(run_after=retry_at).enqueue(user_id, attempt + 1)
        return False


@task()
def run_pipeline_task(run_id: int) -> str:
    """Run a queued (``"mode": "async"``) pipeline run; returns its final status."""
    return pipelines.execute_queued(run_id)


@task()
def analyze_tables(tables: list[str], using: str = "default") -> None:
    """Fresh planner statistics for the tables a committed upsert grew a lot."""
    upserts.analyze_tables(using, tables)


@task()
def deliver_webhooks(streams: list[list]) -> dict[str, int]:
    """Deliver the pending outbox rows of these ``[subscription_id, stream]`` pairs, in order."""
    return webhooks.deliver_streams(streams)


@task()
def expire_reservations(attempt: int = 1) -> int:
    """Expire the reservations past due (idempotent: a second sweep finds none). One sweep
    serves every hold due in its second, so a failed one enqueues itself again (backoff,
    at most ``SWEEP_ATTEMPTS``): no other task may be left for those holds."""
    try:
        return reservations.expire_due()
    except Exception:
        if attempt < SWEEP_ATTEMPTS:
            retry_at = timezone.now() + delivery.backoff(attempt)
            expire_reservations.using(run_after=retry_at).enqueue(attempt + 1)
        raise


SWEEP_ATTEMPTS = 5
