"""What happens when a user account is created: a log line and a welcome e-mail."""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import transaction

from ..core import jobs

logger = logging.getLogger(__name__)


def on_user_created(user) -> None:
    logger.info("New user created: %s", user.get_username())
    if user.email:
        user_id = user.pk
        transaction.on_commit(lambda: _enqueue_welcome(user_id), robust=True)


def _enqueue_welcome(user_id: int) -> None:
    jobs.task("send_welcome_email").enqueue(user_id)


def send_welcome(user_id: int) -> bool:
    user = get_user_model()._default_manager.filter(pk=user_id).first()
    if user is None or not user.email:
        return False
    send_mail(
        subject="Welcome to stockpipe",
        message=f"Hello {user.get_username()}, your stockpipe account is ready.",
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=[user.email],
    )
    return True
