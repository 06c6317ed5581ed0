"""A run's spec lives in a row of its own (``PipelineRunSpec``, migration 0017), written once
when the run is recorded: the run's status updates (claim, progress, final status) rewrite a
small row, not the feed's text (SQLite rewrites a whole row, overflow pages included, on
every ``UPDATE``). ``PipelineRun.spec`` reads and writes it as before."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils.text import capfirst

from app.models import PipelineRun, PipelineRunSpec
from app.utils.utils import process_pipeline
from tests.factories import ProductFactory
from tests.migrations import migrated_back

SPEC_TABLE = PipelineRunSpec._meta.db_table
RUN_TABLE = PipelineRun._meta.db_table


def _feed(rows: int) -> str:
    lines = ["sku,name,price,stock"] + [f"S-{i},Item {i},{i}.50,{i % 7}" for i in range(rows)]
    return "\n".join(lines) + "\n"


def _writes(queries, table: str) -> list[str]:
    """The statements of ``queries`` that write ``table`` (INSERT, UPDATE, DELETE)."""
    found = []
    for query in queries.captured_queries:
        sql = query["sql"].lstrip().upper()
        head = sql.split(" WHERE ")[0].split(" SELECT ")[0].split(" SET ")[0]
        if sql.startswith(("INSERT", "UPDATE", "DELETE")) and f'"{table.upper()}"' in head:
            found.append(query["sql"])
    return found


@pytest.mark.django_db
@pytest.mark.parametrize(
    "outcome, steps",
    [
        ("succeeded", [{"op": "upsert_products", "csv": _feed(50)}]),
        ("previewed", [{"op": "upsert_products", "csv": _feed(50)}]),
        # a business failure: the run is rolled back, its record and spec stay
        (
            "failed",
            [
                {"op": "upsert_products", "csv": _feed(5)},
                {"op": "delete_products", "skus": ["NOPE"]},
            ],
        ),
        # refused by validation before anything runs
        ("invalid", [{"op": "upsert_products", "csv": _feed(5)}, {"op": "no_such_op"}]),
    ],
)
def test_a_run_writes_its_spec_once_and_its_status_updates_leave_it_alone(operator, outcome, steps):
    ProductFactory(sku="S-1", price=Decimal("9.99"), stock=3)
    spec = {"name": f"feed {outcome}", "dry_run": outcome == "previewed", "steps": steps}

    with CaptureQueriesContext(connection) as queries:
        result = process_pipeline(spec, user=operator)

    assert result["status"] == ("failed" if outcome == "invalid" else outcome), result
    # The spec: one INSERT, nothing else ever writes its row.
    assert [sql.split()[0].upper() for sql in _writes(queries, SPEC_TABLE)] == ["INSERT"]
    # The run's row: its INSERT, then status updates, which do not name the spec.
    run_writes = _writes(queries, RUN_TABLE)
    assert run_writes[0].upper().startswith("INSERT") and len(run_writes) >= 2
    assert all('"SPEC"' not in sql.upper() for sql in run_writes)
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert run.status == result["status"] and run.spec == spec
    assert PipelineRunSpec.objects.get(run=run).spec == spec


@pytest.mark.django_db
def test_a_json_null_spec_is_recorded_as_json_null():
    result = process_pipeline("null")

    assert result["status"] == "failed" and result["error"]["kind"] == "invalid"
    run = PipelineRun.objects.get(pk=result["run_id"])
    assert run.spec is None
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT spec FROM {SPEC_TABLE} WHERE run_id = %s", [run.pk])
        [(stored,)] = cursor.fetchall()
    assert stored is not None  # JSON null, not SQL NULL (the column is NOT NULL)


@pytest.mark.django_db
def test_spec_reads_and_writes_as_a_field_of_the_run():
    run = PipelineRun.objects.create(name="r", spec={"steps": [], "price": Decimal("1.50")})
    assert PipelineRunSpec.objects.get(run=run).spec == {"steps": [], "price": "1.50"}

    run.spec = {"steps": [{"op": "round_prices"}]}
    assert run.spec == {"steps": [{"op": "round_prices"}]}  # before the save too
    run.save()
    assert PipelineRunSpec.objects.get(pk=run.pk).spec == {"steps": [{"op": "round_prices"}]}
    assert PipelineRunSpec.objects.count() == 1

    # A save of other fields leaves the spec's row alone.
    with CaptureQueriesContext(connection) as queries:
        run.status = PipelineRun.Status.RUNNING
        run.save(update_fields=["status"])
    assert _writes(queries, SPEC_TABLE) == [] and len(_writes(queries, RUN_TABLE)) == 1

    PipelineRunSpec.objects.filter(pk=run.pk).update(spec={"other": 1})
    run.refresh_from_db()
    assert run.spec == {"other": 1}
    fresh = PipelineRun.objects.get(pk=run.pk)
    assert fresh.spec == {"other": 1}

    # bulk_create writes runs only: such a run has no spec.
    [bare] = PipelineRun.objects.bulk_create([PipelineRun(name="bare", spec={"x": 1})])
    assert PipelineRun.objects.get(pk=bare.pk).spec is None

    run.delete()
    assert not PipelineRunSpec.objects.filter(pk=run.pk).exists()


@pytest.mark.django_db
def test_the_admin_shows_a_runs_spec_as_json(admin_client):
    run = PipelineRun.objects.create(name="r", spec={"steps": [{"op": "upsert_products"}]})

    page = admin_client.get(f"/admin/app/pipelinerun/{run.pk}/change/")

    assert page.status_code == 200
    text = page.content.decode()
    # As when the spec was a JSON field of the run (the field's encoder, compact).
    assert "<label>Spec:</label>" in text
    assert "{&quot;steps&quot;:[{&quot;op&quot;:&quot;upsert_products&quot;}]}" in text
    # Every field of the run is shown too.
    for field in PipelineRun._meta.concrete_fields:
        if field.editable and not field.primary_key:
            assert f"<label>{capfirst(field.verbose_name)}:</label>" in text, field.name


BEFORE = "0016_readpaths_page_columns"


@pytest.mark.django_db(transaction=True)
def test_0017_moves_every_spec_to_its_table_and_back():
    from django.db.models import JSONField, Value

    specs = {
        "feed": {
            "steps": [
                {"op": "upsert_products", "csv": "sku,name,price\nA,\u017b\u00f3\u0142w,1.50\n"}
            ]
        },
        "pruned": {},
        "text": "not an object",
        "null": None,
    }
    with migrated_back(BEFORE) as model:
        old = model("PipelineRun")
        for name, spec in specs.items():
            old.objects.create(
                name=name, spec=spec if spec is not None else Value(None, JSONField())
            )

        call_command("migrate", "app", verbosity=0)
        runs = {run.name: run for run in PipelineRun.objects.all()}
        assert {name: run.spec for name, run in runs.items()} == specs
        assert PipelineRunSpec.objects.count() == len(specs)

        call_command("migrate", "app", BEFORE, verbosity=0)
        assert {run.name: run.spec for run in old.objects.all()} == specs
        with connection.cursor() as cursor:
            columns = connection.introspection.get_table_description(cursor, RUN_TABLE)
        assert [c.null_ok for c in columns if c.name == "spec"] == [False]


def _compression(run_id: int) -> str | None:
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT pg_column_compression(spec) FROM {SPEC_TABLE} WHERE run_id = %s", [run_id]
        )
        return cursor.fetchone()[0]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_0018_compresses_a_feeds_spec_with_lz4_where_the_server_offers_it():
    """A feed's spec (its whole CSV text) is compressed with LZ4, several times faster than
    PostgreSQL's default ``pglz`` (0.12 s against 0.57 s for a 1,000,000-row feed), where
    the server is built with it; migrating back restores the default for new specs."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 'lz4' = ANY(enumvals) FROM pg_settings WHERE name = 'default_toast_compression'"
        )
        offered = cursor.fetchone()[0]
        cursor.execute("SHOW default_toast_compression")
        default = cursor.fetchone()[0]
    spec = {"name": "feed", "steps": [{"op": "upsert_products", "csv": _feed(2_000)}]}
    result = process_pipeline(spec)
    assert result["status"] == "succeeded"
    assert _compression(result["run_id"]) == ("lz4" if offered else default)
    assert PipelineRun.objects.get(pk=result["run_id"]).spec == spec

    with migrated_back("0017"):
        again = process_pipeline(spec)
        assert _compression(again["run_id"]) == default
