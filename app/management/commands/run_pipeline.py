"""``manage.py run_pipeline FILE [--dry-run] [--profile NAME] [--policy ...]``: run a
pipeline spec from a JSON file, or a supplier's CSV/XLSX read through an import profile."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from ...pipelines.service import process_pipeline


class Command(BaseCommand):
    help = (
        "Run a pipeline spec (JSON file, '-' for stdin) synchronously, all-or-nothing. "
        'Steps may read CSV from files with "csv_file" (relative to the spec\'s folder).'
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "file", help="pipeline spec (JSON; '-' reads stdin), or a .csv/.xlsx with --profile"
        )
        parser.add_argument(
            "--profile", help="import profile: run FILE (.csv or .xlsx) as one upsert_products"
        )
        parser.add_argument(
            "--policy",
            choices=["all_or_nothing", "skip_invalid_rows"],
            help="what invalid feed rows do (default: the spec's, else all_or_nothing)",
        )
        parser.add_argument("--dry-run", action="store_true", help="run, show the diff, roll back")
        parser.add_argument("--user", help="username the changes are attributed to")
        parser.add_argument("--json", action="store_true", help="print the full result as JSON")
        parser.add_argument(
            "--no-progress", action="store_true", help="no progress bar even on a terminal"
        )

    def handle(self, *args, **options):
        if options["profile"]:
            spec, base_dir = self._feed(options["file"], options["profile"])
        else:
            spec, base_dir = self._read(options["file"])
        if options["policy"]:
            spec["policy"] = options["policy"]
        if options["dry_run"]:
            spec["dry_run"] = True
        user = None
        if options["user"]:
            user = get_user_model().objects.filter(username=options["user"]).first()
            if user is None:
                raise CommandError(f"No user {options['user']!r}.")
        bar = None
        if not options["no_progress"] and not options["json"] and self.stdout.isatty():
            from tqdm import tqdm

            bar = tqdm(total=0, unit="row", file=sys.stderr, dynamic_ncols=True)

        def on_progress(run) -> None:
            if bar is not None:
                bar.total = run.rows_total
                bar.set_postfix_str(
                    f"step {min(run.steps_done + 1, run.steps_total)}/{run.steps_total}"
                )
                bar.update(run.rows_done - bar.n)

        try:
            result = process_pipeline(
                spec,
                user=user,
                allow_files=True,
                base_dir=base_dir,
                force_sync=True,
                on_progress=on_progress,
            )
        finally:
            if bar is not None:
                bar.close()
        if options["json"]:
            self.stdout.write(json.dumps(result, indent=2))
        else:
            self._summary(result)
        if result.get("error"):
            raise CommandError(f"pipeline run {result['run_id']} failed; nothing was changed.")

    def _feed(self, name: str, profile: str) -> tuple[dict, Path]:
        path = Path(name).resolve()
        if not path.is_file():
            raise CommandError(f"No such file: {name}")
        key = "xlsx_file" if path.suffix.lower() in (".xlsx", ".xlsm") else "csv_file"
        step = {"op": "upsert_products", "profile": profile, key: path.name}
        return {"name": f"{path.name} ({profile})", "steps": [step]}, path.parent

    def _read(self, name: str) -> tuple[dict, Path]:
        try:
            if name == "-":
                return json.load(sys.stdin), Path.cwd()
            path = Path(name)
            with path.open(encoding="utf-8") as fh:
                return json.load(fh), path.resolve().parent
        except OSError as exc:
            raise CommandError(f"Cannot read {name}: {exc}") from exc
        except json.JSONDecodeError as exc:
            raise CommandError(f"{name} is not valid JSON: {exc}") from exc

    def _summary(self, result: dict) -> None:
        out = self.stdout
        error = result.get("error")
        title = f"Pipeline run {result['run_id']} {result.get('name') or ''}".rstrip()
        if error:
            out.write(self.style.ERROR(f"{title}: FAILED ({error['kind']}) - {error['detail']}"))
            for item in error["errors"]:
                loc = ".".join(str(part) for part in item["loc"]) or "(spec)"
                out.write(f"  {loc}: {item['msg']}")
            return
        status = "previewed (dry run, rolled back)" if result["dry_run"] else result["status"]
        out.write(self.style.SUCCESS(f"{title}: {status} in {result['duration_ms'] / 1000:.2f}s"))
        out.write(
            f"  {'step':<4} {'op':<16} {'created':>8} {'updated':>8} {'unchanged':>9} {'deleted':>8}"
        )
        for step in result["steps"]:
            out.write(
                f"  {step['index']:<4} {step['op']:<16} {step['created']:>8} {step['updated']:>8} "
                f"{step['unchanged']:>9} {step['deleted']:>8}"
            )
        totals = result["totals"]
        out.write(
            f"  price changes: {totals['price_changes']}, alerts opened: "
            f"{totals['alerts_opened']}, alerts resolved: {totals['alerts_resolved']}"
        )
        if totals.get("rejected"):
            out.write(f"  rejected rows: {totals['rejected']}")
            for row in result.get("rejected", [])[:20]:
                out.write(
                    f"    row {row['row']}, column {row['column']!r}: {row['message']} "
                    f"(got {row['value']!r})"
                )
        for change in result.get("diff", [])[:50]:
            fields = ", ".join(
                f"{c['field']}: {c['before']} -> {c['after']}" for c in change["changes"]
            )
            out.write(f"  {change['action']:<8} {change['sku']}: {fields}")
        if len(result.get("diff", [])) > 50:
            out.write(f"  ... {len(result['diff']) - 50} more (use --json for all)")
