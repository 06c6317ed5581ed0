"""``manage.py recount_reservations [--fix]``: compare the held-units counters with the
active holds they stand for (``app.services.reservations.recount``). Reports only, unless
``--fix``; exit status 1 when a counter drifted and was not fixed, so cron can alert."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from ...services.reservations import recount


class Command(BaseCommand):
    help = (
        "Report reservation counters (product, product at a location) that differ from "
        "their active holds; --fix corrects them under the products' row locks."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--fix", action="store_true", help="correct the drifted counters (default: report)"
        )

    def handle(self, *args, **options):
        fix = options["fix"]
        drifted = recount(fix=fix)
        for d in drifted:
            where = f" at {d.location}" if d.location else ""
            self.stdout.write(f"{d.sku}{where}: counter {d.counter}, active holds {d.held}")
        if not drifted:
            self.stdout.write("All reservation counters match their active holds.")
        elif fix:
            self.stdout.write(f"{len(drifted)} counter(s) corrected.")
        else:
            raise CommandError(
                f"{len(drifted)} counter(s) differ from their active holds (nothing changed; "
                "--fix corrects them)."
            )
