"""The default queryset of ``Product``: every bulk write goes through change tracking.

``update()``, ``bulk_update()`` and ``bulk_create()`` (plain, ``ignore_conflicts`` or
``update_conflicts``) lock the affected rows, read their current values, send
``pre_save``/``post_save`` for each object and record price history, stock movements and
alerts exactly as ``Product.save()`` does, in the same transaction as the write.
"""

from __future__ import annotations

from django.db import models

from . import writes  # the write paths; app.models imports them first (see __init__)


class ProductQuerySet(models.QuerySet):
    def update(self, **kwargs) -> int:
        return writes.tracked_queryset_update(self, kwargs)

    update.alters_data = True

    def bulk_update(self, objs, fields, batch_size=None) -> int:
        return writes.tracked_bulk_update(self, objs, fields, batch_size=batch_size)

    bulk_update.alters_data = True

    def bulk_create(
        self,
        objs,
        batch_size=None,
        ignore_conflicts=False,
        update_conflicts=False,
        update_fields=None,
        unique_fields=None,
    ):
        return writes.tracked_bulk_create(
            self,
            objs,
            batch_size=batch_size,
            ignore_conflicts=ignore_conflicts,
            update_conflicts=update_conflicts,
            update_fields=update_fields,
            unique_fields=unique_fields,
        )

    bulk_create.alters_data = True

    def delete(self):
        """Django's delete(), once an open change batch has run the effects of the changes
        it collected (``writes.flush_collected``): the collector may load related rows."""
        writes.flush_collected()
        return super().delete()

    delete.alters_data = True
    delete.queryset_only = True

    def low_stock(self) -> ProductQuerySet:
        return self.filter(stock__lt=models.F("low_stock_threshold"))
