"""Supplier feed benchmark: the same rows as a plain CSV, a supplier CSV and an XLSX.

    python benchmarks/feeds.py [--db sqlite|postgres|both] [--rows 1000000] [--quick] [--check]

Each route upserts ``rows`` new products into a fresh database (a temporary SQLite file /
PostgreSQL ``stockpipe_bench_feeds``) with ``manage.py run_pipeline`` in a child process:

* plain:    ``sku,name,price,stock`` (the format without a profile), ``csv_file``;
* supplier: the same rows as a supplier writes them, read through an import profile:
            cp1252, semicolons, decimal commas, thousands dots, two junk rows above the
            header, an unmapped column, quoted names, price x 1.19 rounded to 0.05 (the
            stored prices differ from the plain route's; the work per row is the same);
* xlsx:     the same rows in an XLSX (title row, header on row 2), through a profile.

Times are the run's own ``duration_ms`` (reading, parsing, validating and writing, with
history, ledger and alerts; not the process start). Peak memory is the child's ``VmHWM``.
It prints each route's throughput relative to the plain CSV (target >= 0.5x) and peak memory
(target < 150 MB), and one ``RESULT {...}`` JSON line per database.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, fresh_database_url, run_per_database

PG_NAME = os.environ.get("BENCH_PG_DB", "stockpipe_bench_feeds")
TARGET_RATIO = 0.5
TARGET_MEMORY_MB = 150

PROFILES = {
    "supplier": {
        "name": "bench-supplier",
        "columns": {
            "Artikelnummer": "sku",
            "Bezeichnung": "name",
            "VK-Preis": "price",
            "Bestand": "stock",
        },
        "delimiter": ";",
        "encoding": "cp1252",
        "decimal_separator": ",",
        "thousands_separator": ".",
        "header_row": 3,
        "price_factor": "1.19",
        "price_round_to": "0.05",
        "clamp_stock": True,
    },
    "xlsx": {
        "name": "bench-xlsx",
        "columns": {"Art.-Nr.": "sku", "Artikel": "name", "Preis": "price", "Menge": "stock"},
        "header_row": 2,
    },
}


def row(i: int) -> tuple[str, str, int, int, int]:
    """sku, name, price units, price cents, stock (prices up to 2,009.99: thousands occur)."""
    return f"FEED-{i:08d}", f"Größe {i} Schraube", 1 + (i * 7) % 2009, i % 100, i % 50


def write_files(workdir: Path, rows: int) -> dict[str, Path]:
    plain = workdir / "plain.csv"
    with plain.open("w", encoding="utf-8") as fh:
        fh.write("sku,name,price,stock\n")
        for i in range(rows):
            sku, name, units, cents, stock = row(i)
            fh.write(f"{sku},{name},{units}.{cents:02d},{stock}\n")
    supplier = workdir / "supplier.csv"
    with supplier.open("w", encoding="cp1252", newline="") as fh:
        fh.write("Preisliste Müller GmbH;;;;\r\nStand: 01.12.2026;;;;\r\n")
        fh.write("Artikelnummer;Bezeichnung;VK-Preis;Bestand;Lieferzeit\r\n")
        for i in range(rows):
            sku, name, units, cents, stock = row(i)
            price = f"{units // 1000}.{units % 1000:03d}" if units >= 1000 else str(units)
            fh.write(f'{sku};"{name}";{price},{cents:02d};{stock};2 Tage\r\n')
    xlsx = workdir / "feed.xlsx"
    write_xlsx(xlsx, rows)
    return {"plain": plain, "supplier": supplier, "xlsx": xlsx}


def write_xlsx(path: Path, rows: int) -> None:
    """The rows as an XLSX written as Excel writes one (shared strings, a dimension;
    ``tests/feeds/excel.py``): a title row, the header on row 2, every 10th price a number
    stored as text, the remark column empty. (openpyxl writes inline strings, which Excel
    never does and which openpyxl reads several times slower.)"""
    sys.path.insert(0, str(ROOT))
    from tests.feeds.excel import write_xlsx as write

    def cells():
        yield ["Lagerliste Dezember"]
        yield ["Art.-Nr.", "Artikel", "Preis", "Menge", "Bemerkung"]
        for i in range(rows):
            sku, name, units, cents, stock = row(i)
            price = f"{units}.{cents:02d}"
            yield [sku, name, price if i % 10 == 0 else float(price), stock, None]

    write(str(path), cells(), size=f"A1:E{rows + 2}")


PARSE_CHILD = """
import json, os, sys, time
from app.core.feeds import feed_profile
from app.pipelines.feeds import csv_records, iter_feed, xlsx_records
profile = feed_profile(json.loads(os.environ["BENCH_PROFILE"]))
path = os.environ["BENCH_FILE"]
with open("/proc/self/clear_refs", "w") as fh:
    fh.write("5")
start = time.perf_counter()
records = xlsx_records(profile, path=path) if path.endswith(".xlsx") else csv_records(profile, path=path)
rows = sum(1 for _ in iter_feed(profile, records))
kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print("RESULT_JSON " + json.dumps({"rows": rows, "seconds": time.perf_counter() - start,
      "peak_kb": kb}))
"""


def parse_only(rows: int) -> None:
    """Peak memory and time of reading the files alone (no database): what a profile adds."""
    with tempfile.TemporaryDirectory(prefix="stockpipe-feeds-") as tmp:
        files = write_files(Path(tmp), rows)
        for name in ("supplier", "xlsx"):
            env = {
                **os.environ,
                "BENCH_FILE": str(files[name]),
                "BENCH_PROFILE": json.dumps(PROFILES[name]),
                "PYTHONPATH": str(ROOT),
            }
            proc = subprocess.run(
                [sys.executable, "-c", PARSE_CHILD],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
            )
            line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT_JSON ")), None)
            if line is None:
                raise SystemExit(proc.stderr[-3000:])
            out = json.loads(line.split(" ", 1)[1])
            print(
                f"  parse only, {name:<8}: {out['rows']:,} rows in {out['seconds']:.1f}s "
                f"({out['rows'] / out['seconds']:,.0f} rows/s), peak {out['peak_kb'] / 1024:.0f} MB",
                flush=True,
            )


CHILD = """
import json, os, sys
sys.argv = ["manage.py"]
import django
django.setup()
from django.core.management import call_command
from app.models import ImportProfile
from app.pipelines.service import process_pipeline
call_command("migrate", verbosity=0)
profile = json.loads(os.environ["BENCH_PROFILE"]) if os.environ.get("BENCH_PROFILE") else None
if profile:
    ImportProfile.objects.create(**profile)
step = {"op": "upsert_products", os.environ["BENCH_KEY"]: os.environ["BENCH_FILE"]}
if profile:
    step["profile"] = profile["name"]
# Peak memory of the run itself: reset the high-water mark after setup (Linux).
try:
    with open("/proc/self/clear_refs", "w") as fh:
        fh.write("5")
except OSError:
    pass
result = process_pipeline({"name": "bench", "steps": [step]}, allow_files=True)
kb = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM"))
print("RESULT_JSON " + json.dumps({"error": result["error"], "totals": result.get("totals"),
      "duration_ms": result["duration_ms"], "peak_kb": kb}))
"""


def run_route(db: str, workdir: Path, name: str, path: Path) -> dict:
    url = fresh_database_url(db, workdir / name, PG_NAME)
    (workdir / name).mkdir(parents=True, exist_ok=True)
    profile = PROFILES.get(name)
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "stockpipe.settings",
        "LOG_LEVEL": "WARNING",
        "DEBUG": "False",
        "EMAIL_URL": "memorymail://",
        "BENCH_KEY": "xlsx_file" if path.suffix == ".xlsx" else "csv_file",
        "BENCH_FILE": str(path),
        "BENCH_PROFILE": json.dumps(profile) if profile else "",
    }
    proc = subprocess.run(
        [sys.executable, "-c", CHILD], cwd=ROOT, env=env, capture_output=True, text=True
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT_JSON ")), None)
    if proc.returncode != 0 or line is None:
        raise SystemExit(f"{name} run failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    out = json.loads(line.split(" ", 1)[1])
    if out["error"]:
        raise SystemExit(f"{name} run failed: {out['error']}")
    return out


def bench(db: str, rows: int, repeat: int = 1) -> dict:
    with tempfile.TemporaryDirectory(prefix="stockpipe-feeds-") as tmp:
        workdir = Path(tmp)
        started = time.perf_counter()
        files = write_files(workdir, rows)
        sizes = ", ".join(f"{k} {p.stat().st_size / 1e6:.0f} MB" for k, p in files.items())
        print(
            f"== {db}: {rows:,} rows; files written in {time.perf_counter() - started:.0f}s "
            f"({sizes})",
            flush=True,
        )
        results: dict[str, dict] = {}
        # Routes alternate; each route's fastest run counts, so a burst of load from other
        # processes does not decide a ratio.
        for attempt in range(repeat):
            for name, path in files.items():
                out = run_route(db, workdir / str(attempt), name, path)
                assert out["totals"]["created"] == rows, out["totals"]
                best = results.get(name)
                if best is None or out["duration_ms"] < best["duration_ms"]:
                    results[name] = {
                        **out,
                        "peak_kb": max(out["peak_kb"], (best or out)["peak_kb"]),
                    }
                elif out["peak_kb"] > best["peak_kb"]:
                    best["peak_kb"] = out["peak_kb"]
                print(
                    f"  {name:<9} {out['duration_ms'] / 1000:7.1f}s  "
                    f"{rows / (out['duration_ms'] / 1000):9,.0f} rows/s  "
                    f"peak {out['peak_kb'] / 1024:4.0f} MB",
                    flush=True,
                )
    plain = results["plain"]["duration_ms"]
    summary = {
        "db": db,
        "rows": rows,
        "repeat": repeat,
        **{f"{k}_s": round(v["duration_ms"] / 1000, 2) for k, v in results.items()},
        **{f"{k}_peak_mb": round(v["peak_kb"] / 1024) for k, v in results.items()},
        "supplier_vs_plain": round(plain / results["supplier"]["duration_ms"], 2),
        "xlsx_vs_plain": round(plain / results["xlsx"]["duration_ms"], 2),
    }
    print(
        f"  => throughput vs plain CSV: supplier CSV {summary['supplier_vs_plain']}x, "
        f"XLSX {summary['xlsx_vs_plain']}x (target >= {TARGET_RATIO}x); peak memory "
        f"{summary['supplier_peak_mb']} / {summary['xlsx_peak_mb']} MB "
        f"(target < {TARGET_MEMORY_MB} MB)",
        flush=True,
    )
    print("RESULT " + json.dumps(summary), flush=True)
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--quick", action="store_true", help="CI smoke test: 5,000 rows")
    parser.add_argument("--repeat", type=int, default=1, help="runs per route; the best counts")
    parser.add_argument("--check", action="store_true", help="exit non-zero if a target is missed")
    parser.add_argument(
        "--parse-only", action="store_true", help="only read the files (no database): memory"
    )
    args = parser.parse_args()
    if args.parse_only:
        parse_only(args.rows)
        return
    if args.quick:
        args.rows = 5_000
    if args.db == "both":
        raise SystemExit(run_per_database(__file__))
    summary = bench(args.db, args.rows, args.repeat)
    if args.check:
        missed = [
            name
            for name, ok in [
                ("supplier throughput", summary["supplier_vs_plain"] >= TARGET_RATIO),
                ("xlsx throughput", summary["xlsx_vs_plain"] >= TARGET_RATIO),
                ("supplier memory", summary["supplier_peak_mb"] < TARGET_MEMORY_MB),
                ("xlsx memory", summary["xlsx_peak_mb"] < TARGET_MEMORY_MB),
            ]
            if not ok
        ]
        if missed:
            raise SystemExit(f"targets missed: {', '.join(missed)}")


if __name__ == "__main__":
    main()
