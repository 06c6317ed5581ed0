"""Drop the single-column ``product_id`` indexes of stock levels and reservations: the
composite indexes that lead with the product (``one_level_per_location``,
``reservation_product_status``) serve every lookup by product, and each extra index costs
every insert (a supplier upsert creates a level per new product).

Only the indexes go: an ``AlterField`` would also drop and re-add the foreign keys, which
re-validates every row under a lock on both tables.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = [
    ("app_reservation", "app_reservation_product_id_554d0b3f"),
    ("app_stocklevel", "app_stocklevel_product_id_caf3fc4c"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("app", "0014_readpaths_covering_indexes"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="reservation",
                    name="product",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="reservations",
                        to="app.product",
                    ),
                ),
                migrations.AlterField(
                    model_name="stocklevel",
                    name="product",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="stock_levels",
                        to="app.product",
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    f'DROP INDEX IF EXISTS "{index}"',
                    reverse_sql=f'CREATE INDEX "{index}" ON "{table}" ("product_id")',
                )
                for table, index in INDEXES
            ],
        ),
    ]
