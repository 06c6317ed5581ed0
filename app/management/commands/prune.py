"""``manage.py prune``: remove what the retention settings let go (daily cron)."""

from __future__ import annotations

from dataclasses import fields

from django.core.management.base import BaseCommand, CommandError

from ...services.retention import RetentionPolicy, prune


class Command(BaseCommand):
    help = (
        "Delete delivered webhook outbox rows, finished task results and old pipeline-run "
        "payloads; price history, ledger and audit only where a STOCKPIPE_RETAIN_* setting "
        "asks. --dry-run counts without deleting."
    )

    def add_arguments(self, parser):
        parser.add_argument("--dry-run", action="store_true", help="count, delete nothing")
        for field in fields(RetentionPolicy):
            parser.add_argument(
                f"--{field.name.replace('_', '-')}",
                type=int,
                default=None,
                help="override the STOCKPIPE_RETAIN_* setting for this run",
            )

    def handle(self, *args, **options):
        overrides = {
            f.name: options[f.name] for f in fields(RetentionPolicy) if options[f.name] is not None
        }
        try:
            policy = RetentionPolicy.from_settings(**overrides)
        except ValueError as error:
            raise CommandError(str(error)) from error
        dropped: list[str] = []
        report = prune(policy, dry_run=options["dry_run"], partitions=dropped)
        verb = "would remove" if options["dry_run"] else "removed"
        for line in dropped:
            self.stdout.write(line)
        for kind, count in report.items():
            self.stdout.write(f"{kind}: {verb} {count}")
