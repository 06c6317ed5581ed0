from decimal import Decimal

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management.base import BaseCommand
from django.db import transaction

from ...core.context import change_context
from ...models import Product

DEMO_PRODUCTS = [
    ("LAP-1", "Laptop", "999.00", 10),
    ("LAP-2", "Laptop Pro", "1499.00", 4),
    ("MOU-1", "Mouse", "19.90", 40),
    ("KEY-1", "Keyboard", "49.00", 25),
    ("MON-1", "Monitor 27in", "279.00", 7),
    ("CAB-1", "USB-C cable", "9.90", 120),
]


class Command(BaseCommand):
    help = "Load demo products and a demo admin user (admin / admin) - development only."

    def handle(self, *args, **options):
        User = get_user_model()
        with transaction.atomic(), change_context(source="seed_demo"):
            admin, created = User.objects.get_or_create(
                username="admin",
                defaults={"email": "admin@example.com", "is_staff": True, "is_superuser": True},
            )
            if created:
                admin.set_password("admin")
                admin.save()
            admin.user_permissions.add(Permission.objects.get(codename="run_pipeline"))
            for sku, name, price, stock in DEMO_PRODUCTS:
                product, made = Product.objects.get_or_create(
                    sku=sku, defaults={"name": name, "price": Decimal(price), "stock": stock}
                )
                if made and sku == "LAP-1":
                    product.price = Decimal("949.00")
                    product.save()
        self.stdout.write(
            self.style.SUCCESS(f"Demo data ready: {len(DEMO_PRODUCTS)} products, user admin/admin.")
        )
