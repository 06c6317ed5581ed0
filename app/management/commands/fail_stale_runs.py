"""``manage.py fail_stale_runs``: mark pipeline runs whose worker died as failed (cron)."""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand

from ...pipelines.service import STALE_AFTER, fail_stale_runs


class Command(BaseCommand):
    help = "Mark running pipeline runs without a recent heartbeat as failed."

    def add_arguments(self, parser):
        parser.add_argument(
            "--minutes",
            type=float,
            default=STALE_AFTER.total_seconds() / 60,
            help="heartbeat age after which a run counts as dead (default %(default)s)",
        )

    def handle(self, *args, **options):
        count = fail_stale_runs(timedelta(minutes=options["minutes"]))
        self.stdout.write(f"{count} stale pipeline run(s) marked failed.")
