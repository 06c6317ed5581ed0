"""Locations, stock levels and reservations (issue 14).

Existing stock moves to the default location (``STOCKPIPE_DEFAULT_LOCATION``): one level
per product holding its whole stock, and every ledger row names that location, so the
ledger sums to the stock per product and per (product, location) as before. Then the
ledger's location becomes required.
"""

import app.core.domain
import django.core.validators
import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models
from django.utils import timezone


def to_default_location(apps, schema_editor):
    from app import conf

    Location = apps.get_model("app", "Location")
    StockLevel = apps.get_model("app", "StockLevel")
    StockMovement = apps.get_model("app", "StockMovement")
    Product = apps.get_model("app", "Product")
    alias = schema_editor.connection.alias
    code = conf.default_location()
    location, _ = Location.objects.using(alias).get_or_create(
        code=code, defaults={"name": code, "created_at": timezone.now()}
    )
    connection = schema_editor.connection
    qn = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {qn(StockLevel._meta.db_table)} (product_id, location_id, quantity) "
            f"SELECT id, %s, stock FROM {qn(Product._meta.db_table)}",
            [location.pk],
        )
    StockMovement.objects.using(alias).filter(location__isnull=True).update(location=location)
    if connection.vendor == "postgresql":
        # The updated rows' deferred foreign-key checks must fire before the ALTER TABLE
        # below ("pending trigger events").
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def back(apps, schema_editor):
    pass  # the tables and the column go with the schema operations


class Migration(migrations.Migration):

    dependencies = [
        ('app', '0008_feeds_import_profiles'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='Location',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('code', models.CharField(max_length=64, unique=True, validators=[app.core.domain.validate_sku])),
                ('name', models.CharField(max_length=200, validators=[app.core.domain.validate_name])),
                ('active', models.BooleanField(default=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
            ],
            options={
                'ordering': ['code'],
            },
        ),
        migrations.AddField(
            model_name='stockmovement',
            name='location',
            field=models.ForeignKey(null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='app.location'),
        ),
        migrations.CreateModel(
            name='Reservation',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('source', models.CharField(default='shell', max_length=100)),
                ('sku', models.CharField(db_index=True, max_length=64)),
                ('quantity', models.IntegerField()),
                ('reference', models.CharField(blank=True, default='', max_length=200)),
                ('status', models.CharField(choices=[('active', 'Active'), ('committed', 'Committed'), ('released', 'Released'), ('expired', 'Expired')], default='active', max_length=10)),
                ('expires_at', models.DateTimeField()),
                ('idempotency_key', models.CharField(blank=True, max_length=200, null=True, unique=True)),
                ('created_at', models.DateTimeField(db_index=True)),
                ('ended_at', models.DateTimeField(blank=True, null=True)),
                ('changed_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                ('location', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='reservations', to='app.location')),
                ('product', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='reservations', to='app.product')),
            ],
            options={
                'ordering': ['-created_at', '-id'],
                'indexes': [models.Index(fields=['product', 'status'], name='reservation_product_status'), models.Index(fields=['status', 'expires_at'], name='reservation_due')],
                'constraints': [models.CheckConstraint(condition=models.Q(('quantity__gt', 0)), name='reservation_quantity_positive')],
            },
        ),
        migrations.CreateModel(
            name='StockLevel',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('quantity', models.IntegerField(default=0)),
                ('low_stock_threshold', models.PositiveIntegerField(blank=True, null=True, validators=[django.core.validators.MaxValueValidator(2147483647)])),
                ('location', models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='stock_levels', to='app.location')),
                ('product', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='stock_levels', to='app.product')),
            ],
            options={
                'ordering': ['product_id', 'location_id'],
                'constraints': [models.UniqueConstraint(fields=('product', 'location'), name='one_level_per_location'), models.CheckConstraint(condition=models.Q(('quantity__gte', 0)), name='stock_level_quantity_non_negative')],
            },
        ),
        migrations.RunPython(to_default_location, back, elidable=False),
        migrations.AlterField(
            model_name='stockmovement',
            name='location',
            field=models.ForeignKey(on_delete=django.db.models.deletion.PROTECT, related_name='+', to='app.location'),
        ),
        migrations.AlterField(
            model_name='webhookdelivery',
            name='event_type',
            field=models.CharField(choices=[('product.created', 'Product Created'), ('product.updated', 'Product Updated'), ('product.deleted', 'Product Deleted'), ('price.changed', 'Price Changed'), ('stock.low', 'Stock Low'), ('stock.restored', 'Stock Restored'), ('stock.transferred', 'Stock Transferred'), ('reservation.created', 'Reservation Created'), ('reservation.committed', 'Reservation Committed'), ('reservation.released', 'Reservation Released'), ('reservation.expired', 'Reservation Expired'), ('pipeline.finished', 'Pipeline Finished')], max_length=40),
        ),
            migrations.RemoveConstraint(
            model_name='stockalert',
            name='one_open_stock_alert_per_product',
        ),
        migrations.AddField(
            model_name='stockalert',
            name='location',
            field=models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.PROTECT, related_name='+', to='app.location'),
        ),
        migrations.AddConstraint(
            model_name='stockalert',
            constraint=models.UniqueConstraint(condition=models.Q(('location__isnull', True), ('product__isnull', False), ('resolved_at__isnull', True)), fields=('product',), name='one_open_stock_alert_per_product'),
        ),
        migrations.AddConstraint(
            model_name='stockalert',
            constraint=models.UniqueConstraint(condition=models.Q(('location__isnull', False), ('product__isnull', False), ('resolved_at__isnull', True)), fields=('product', 'location'), name='one_open_stock_alert_per_location'),
        ),
    ]
