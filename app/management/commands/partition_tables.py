"""``manage.py partition_tables``: monthly partitions for price history, ledger and outbox.

Without ``--apply`` or ``--ahead`` it only prints the plan. ``--apply`` converts the tables
that are still plain (PostgreSQL only) and creates the months ahead; ``--ahead N`` alone
(daily cron) only creates missing months of tables already partitioned, and does nothing
on plain tables or SQLite, so it is safe everywhere.
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from ...services import partitioning


class Command(BaseCommand):
    help = (
        "Partition price history, stock ledger and webhook outbox by month (PostgreSQL). "
        "No option: print the plan. --apply: convert, then create --ahead months. "
        "--ahead N alone: create missing months of partitioned tables (cron)."
    )

    def add_arguments(self, parser):
        parser.add_argument("--apply", action="store_true", help="convert the plain tables")
        parser.add_argument(
            "--ahead", type=int, default=None, help="months after this one to create (default 3)"
        )
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")
        parser.add_argument(
            "--only",
            action="append",
            choices=[spec.name for spec in partitioning.TABLES],
            default=[],
            help="only this table (repeatable)",
        )
        parser.add_argument("--database", default=DEFAULT_DB_ALIAS)

    def handle(self, *args, **options):
        self.verbosity = options["verbosity"]
        using = options["database"]
        ahead = options["ahead"]
        if ahead is not None and ahead < 0:
            raise CommandError(f"--ahead: give 0 or more months, not {ahead}")
        apply = options["apply"]
        dry_run = options["dry_run"] or (not apply and ahead is None)
        only = tuple(options["only"])
        if connections[using].vendor != "postgresql":
            if apply:
                raise CommandError("partition_tables --apply: PostgreSQL only; nothing changed")
            self.note("Not PostgreSQL: tables stay unpartitioned; nothing to do.")
            return
        if apply and connections[using].pg_version < 140000:
            raise CommandError("partition_tables --apply: needs PostgreSQL 14 or later")
        now = timezone.now()
        ahead = 3 if ahead is None else ahead
        if dry_run:
            self.print_plan(now, ahead, apply or options["ahead"] is None, only, using)
            return
        try:
            if apply:
                converted = partitioning.convert(now=now, using=using, only=only, say=self.note)
                for table in converted:
                    self.stdout.write(f"{table}: partitioned by month")
            for line in partitioning.ensure_ahead(ahead, now=now, using=using, only=only):
                self.stdout.write(line)
        except partitioning.PartitioningError as error:
            raise CommandError(str(error)) from error

    def note(self, line: str) -> None:
        if self.verbosity >= 1:
            self.stdout.write(line)

    def print_plan(self, now, ahead: int, converting: bool, only, using: str) -> None:
        write = self.stdout.write
        for spec in partitioning.selected(only):
            if partitioning.is_partitioned(spec.table, using=using):
                months = partitioning.missing_months(spec, now, ahead, using=using)
                names = ", ".join(f"{m:%Y-%m}" for m in months) or "none"
                write(f"{spec.table}: partitioned; months to create (ahead {ahead}): {names}")
                continue
            if not converting:
                write(f"{spec.table}: not partitioned (--apply converts it); left alone")
                continue
            write(f"{spec.table}: not partitioned; --apply would, by {spec.key}:")
            for n, step in enumerate(partitioning.conversion_plan(spec, now, using=using), 1):
                write(f"  {n}. {step.what}")
                for sql in step.sql:
                    write(f"       {sql}")
            bound = partitioning.legacy_bound(now)
            last = partitioning.add_months(partitioning.month_start(now), ahead)
            if last >= bound:
                write(f"  then months {bound:%Y-%m} to {last:%Y-%m}")
        write("Dry run: nothing changed.")
