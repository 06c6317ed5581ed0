# Reservation counters (issue 14): Product.reserved and StockLevel.reserved, filled from the
# active holds (status active, due or not: the sweep ends those past expires_at).

from django.db import migrations, models
from django.db.models import OuterRef, Subquery, Sum, Value
from django.db.models.functions import Coalesce


def fill(apps, schema_editor):
    alias = schema_editor.connection.alias
    Product = apps.get_model("app", "Product")
    StockLevel = apps.get_model("app", "StockLevel")
    Reservation = apps.get_model("app", "Reservation")
    active = Reservation.objects.using(alias).filter(status="active")

    def total(**outer):
        held = (
            active.filter(**outer)
            .order_by()
            .values("product_id")
            .annotate(n=Sum("quantity"))
            .values("n")
        )
        return Coalesce(Subquery(held[:1]), Value(0))

    Product.objects.using(alias).update(reserved=total(product_id=OuterRef("pk")))
    StockLevel.objects.using(alias).update(
        reserved=total(product_id=OuterRef("product_id"), location_id=OuterRef("location_id"))
    )


class Migration(migrations.Migration):

    dependencies = [
        ('app', '0011_drop_covered_indexes'),
    ]

    operations = [
        migrations.AddField(
            model_name='product',
            name='reserved',
            field=models.IntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.AddField(
            model_name='stocklevel',
            name='reserved',
            field=models.IntegerField(db_default=0, default=0, editable=False),
        ),
        migrations.RunPython(fill, migrations.RunPython.noop, elidable=False),
        migrations.AddConstraint(
            model_name='product',
            constraint=models.CheckConstraint(condition=models.Q(('reserved__gte', 0)), name='product_reserved_non_negative'),
        ),
        migrations.AddConstraint(
            model_name='stocklevel',
            constraint=models.CheckConstraint(condition=models.Q(('reserved__gte', 0)), name='stock_level_reserved_non_negative'),
        ),
    ]
