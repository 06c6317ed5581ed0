from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "app"
    label = "app"
    verbose_name = "Inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save, pre_delete, pre_save

        from . import receivers
        from .models import Product

        pre_save.connect(
            receivers.product_pre_save, sender=Product, dispatch_uid="app.product_pre_save"
        )
        post_save.connect(
            receivers.product_post_save, sender=Product, dispatch_uid="app.product_post_save"
        )
        pre_delete.connect(
            receivers.product_pre_delete, sender=Product, dispatch_uid="app.product_pre_delete"
        )
        post_delete.connect(
            receivers.product_post_delete, sender=Product, dispatch_uid="app.product_post_delete"
        )
        post_save.connect(
            receivers.user_post_save, sender=get_user_model(), dispatch_uid="app.user_post_save"
        )
