"""The signal adapters' marks and the dispatch tests, where the tracking layer has always
imported them from; they live in ``app.models.dispatch`` (the write paths below ask them)."""

from ..models.dispatch import (
    BulkForm,
    bulk_form,
    bulk_forms,
    rows_suffice,
    saves_are_bulk,
    saves_tracked,
)

__all__ = ["BulkForm", "bulk_form", "bulk_forms", "rows_suffice", "saves_are_bulk", "saves_tracked"]
