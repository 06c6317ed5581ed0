"""Drop three single-column indexes a composite index already serves (issue 13: each index
costs every write; ``benchmarks/indexes.py`` measures them).

* ``app_pricehistory.product_id``: ``pricehistory_product_time`` (product_id, changed_at, id)
  starts with it, so lookups, ``SET NULL`` on a product's deletion and joins use that one.
* ``app_stockmovement.product_id``: likewise ``stockmovement_product_time`` (0010).
* ``app_webhookdelivery.subscription_id``: ``webhook_stream`` (subscription_id, stream,
  status, id) starts with it.

Only the index goes. Django's own ``AlterField`` would also drop and re-add the price
history's foreign key, re-checking every row under a lock (minutes at ten million rows), so
the database steps are the ``DROP INDEX`` alone and the state follows separately.
"""

import django.db.models.deletion
from django.db import migrations, models

HISTORY_INDEX = "app_pricehistory_product_id_d07857f4"
LEDGER_INDEX = "app_stockmovement_product_id_cb2dea9b"
DELIVERY_INDEX = "app_webhookdelivery_subscription_id_28162cae"


class Migration(migrations.Migration):
    dependencies = [
        ("app", "0010_history_product_time_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{HISTORY_INDEX}"',
                    f'CREATE INDEX "{HISTORY_INDEX}" ON "app_pricehistory" ("product_id")',
                ),
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{LEDGER_INDEX}"',
                    f'CREATE INDEX "{LEDGER_INDEX}" ON "app_stockmovement" ("product_id")',
                ),
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{DELIVERY_INDEX}"',
                    f'CREATE INDEX "{DELIVERY_INDEX}" ON "app_webhookdelivery" ("subscription_id")',
                ),
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="pricehistory",
                    name="product",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="price_history",
                        to="app.product",
                    ),
                ),
                migrations.AlterField(
                    model_name="stockmovement",
                    name="product",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="stock_movements",
                        to="app.product",
                    ),
                ),
                migrations.AlterField(
                    model_name="webhookdelivery",
                    name="subscription",
                    field=models.ForeignKey(
                        db_constraint=False,
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="deliveries",
                        to="app.webhooksubscription",
                    ),
                ),
            ],
        ),
    ]
