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
        from .models import ApiToken, PipelineRun, Product, StockAlert, WebhookSubscription
        from .services.alerts import alerts_opened, alerts_resolved
        from .webhooks import receivers as webhooks
        from .webhooks.signals import pipeline_finished

        # Webhook outbox receivers first: a product's event precedes the alert it causes.
        post_save.connect(
            webhooks.product_saved, sender=Product, dispatch_uid="webhooks.product_saved"
        )
        post_delete.connect(
            webhooks.product_deleted, sender=Product, dispatch_uid="webhooks.product_deleted"
        )
        alerts_opened.connect(
            webhooks.alerts_opened, sender=StockAlert, dispatch_uid="webhooks.alerts_opened"
        )
        alerts_resolved.connect(
            webhooks.alerts_resolved, sender=StockAlert, dispatch_uid="webhooks.alerts_resolved"
        )
        pipeline_finished.connect(
            webhooks.pipeline_finished,
            sender=PipelineRun,
            dispatch_uid="webhooks.pipeline_finished",
        )
        post_save.connect(
            webhooks.subscription_changed,
            sender=WebhookSubscription,
            dispatch_uid="webhooks.subscription_saved",
        )
        post_delete.connect(
            webhooks.subscription_changed,
            sender=WebhookSubscription,
            dispatch_uid="webhooks.subscription_deleted",
        )
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
        # Cached API responses and token identities (app.services.product_cache, .tokens).
        post_save.connect(
            receivers.product_cache_saved, sender=Product, dispatch_uid="app.product_cache_saved"
        )
        post_delete.connect(
            receivers.product_cache_deleted,
            sender=Product,
            dispatch_uid="app.product_cache_deleted",
        )
        post_save.connect(
            receivers.api_token_saved, sender=ApiToken, dispatch_uid="app.api_token_saved"
        )
        post_delete.connect(
            receivers.api_token_deleted, sender=ApiToken, dispatch_uid="app.api_token_deleted"
        )
        post_save.connect(
            receivers.user_saved_forget_tokens,
            sender=get_user_model(),
            dispatch_uid="app.user_saved_forget_tokens",
        )
        # A write through a proxy of Product sends the proxy as the signals' sender, which
        # receivers connected for Product do not hear: connect the project's own Product
        # receivers (in the same order) for each proxy, so no write path skips tracking.
        # Users' receivers keep Django's rule (sender=Product hears Product, not proxies).
        product_receivers = [
            (post_save, webhooks.product_saved, "webhooks.product_saved"),
            (post_delete, webhooks.product_deleted, "webhooks.product_deleted"),
            (pre_save, receivers.product_pre_save, "app.product_pre_save"),
            (post_save, receivers.product_post_save, "app.product_post_save"),
            (pre_delete, receivers.product_pre_delete, "app.product_pre_delete"),
            (post_delete, receivers.product_post_delete, "app.product_post_delete"),
            (post_save, receivers.product_cache_saved, "app.product_cache_saved"),
            (post_delete, receivers.product_cache_deleted, "app.product_cache_deleted"),
        ]
        for model in self.apps.get_models():
            if model._meta.proxy and issubclass(model, Product):
                for signal, receiver, uid in product_receivers:
                    signal.connect(receiver, sender=model, dispatch_uid=uid)
