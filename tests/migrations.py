"""Migration tests: the database taken back to an earlier migration of the app, and forward
again to the latest whatever the test does (the next test finds the schema it expects)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Model


@contextmanager
def migrated_back(migration: str) -> Iterator[Callable[[str], type[Model]]]:
    """``app`` migrated back to ``migration`` (a name or its prefix) for the block; yields
    ``model(name)``: the model as it was at that migration (for rows written then)."""
    try:
        call_command("migrate", "app", migration, verbosity=0)
        yield lambda name: historical_model(migration, name)
    finally:
        call_command("migrate", verbosity=0)


def historical_model(migration: str, name: str) -> type[Model]:
    """The model ``name`` of ``app`` as it was at ``migration`` (a name or its prefix)."""
    loader = MigrationExecutor(connection).loader
    key = loader.get_migration_by_prefix("app", migration).name
    return loader.project_state(("app", key)).apps.get_model("app", name)
