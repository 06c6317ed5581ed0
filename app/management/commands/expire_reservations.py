"""``manage.py expire_reservations``: end the reservations past ``expires_at`` (cron-safe:
runs at the same time as another sweep or the background task expire each one once)."""

from __future__ import annotations

from django.core.management.base import BaseCommand

from ...services.reservations import expire_due


class Command(BaseCommand):
    help = "Expire active reservations whose expires_at has passed."

    def handle(self, *args, **options):
        count = expire_due()
        self.stdout.write(f"{count} reservation(s) expired.")
