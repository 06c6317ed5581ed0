"""Migration 0004 (SKU and name rules) applies over legacy rows that break the rules: it only
adds field validators, so it changes no schema and validates no existing row."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from app.models import Product
from tests.migrations import migrated_back

from .legacy import legacy_product


@pytest.mark.django_db(transaction=True)
def test_0004_applies_over_legacy_rows_and_changes_no_sql():
    executor = MigrationExecutor(connection)
    # applied by the test database setup (later migrations may follow it)
    assert ("app", "0004_product_field_rules") in executor.loader.applied_migrations
    migration = executor.loader.get_migration("app", "0004_product_field_rules")
    state = executor.loader.project_state(("app", "0003_pipeline_spec_encoder"))
    with connection.schema_editor(collect_sql=True) as editor:
        migration.apply(state, editor)
    assert [sql for sql in editor.collected_sql if not sql.startswith("--")] == []

    legacy_product("OLD\nSKU", name="two\nlines")
    with migrated_back("0003"):
        call_command("migrate", "app", verbosity=0)
    assert Product.objects.get().sku == "OLD\nSKU"
