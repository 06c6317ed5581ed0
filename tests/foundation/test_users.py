"""A new user is logged and welcomed by e-mail; updates send nothing."""

import logging

import pytest
from django.contrib.auth.models import User

pytestmark = pytest.mark.django_db


def test_new_user_is_logged_and_gets_a_welcome_email(
    smtp_server, caplog, django_capture_on_commit_callbacks, run_worker
):
    with (
        caplog.at_level(logging.INFO, logger="app"),
        django_capture_on_commit_callbacks(execute=True),
    ):
        User.objects.create_user("alice", "alice@example.com", "pw-for-tests-1")
    run_worker()
    assert "New user created: alice" in caplog.text
    assert [m["To"] for m in smtp_server.messages] == ["alice@example.com"]
    assert smtp_server.messages[0]["Subject"] == "Welcome to stockpipe"


def test_updates_and_users_without_address_send_nothing(
    smtp_server, django_capture_on_commit_callbacks, run_worker
):
    with django_capture_on_commit_callbacks(execute=True):
        bob = User.objects.create_user("bob", "", "pw-for-tests-1")
        bob.first_name = "Bob"
        bob.save()
    run_worker()
    with django_capture_on_commit_callbacks(execute=True):
        carol = User.objects.create_user("carol", "carol@example.com", "pw-for-tests-1")
    run_worker()
    with django_capture_on_commit_callbacks(execute=True):
        carol.last_name = "C"
        carol.save()
    run_worker()
    assert [m["To"] for m in smtp_server.messages] == ["carol@example.com"]
