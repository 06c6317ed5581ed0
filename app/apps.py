import gc

from django.apps import AppConfig


class InventoryConfig(AppConfig):
    name = "app"
    label = "app"
    verbose_name = "Inventory"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group, Permission
        from django.contrib.contenttypes.models import ContentType
        from django.db.models.signals import (
            class_prepared,
            m2m_changed,
            post_delete,
            post_migrate,
            post_save,
            pre_delete,
            pre_save,
        )

        from . import receivers, tasks
        from .core import jobs
        from .models import (
            ApiToken,
            PipelineRun,
            Product,
            Reservation,
            StockAlert,
            WebhookSubscription,
            writes,
        )
        from .services import alerts, product_cache
        from .signals import (
            alerts_opened,
            alerts_resolved,
            pipeline_finished,
            reservations_changed,
            stock_transferred,
        )
        from .tracking import batch, effects, history, levels
        from .webhooks import outbox
        from .webhooks import receivers as webhooks

        # The change pipeline: what every product write does, in this order. Webhook
        # product events come before alerts, so a product's own event precedes the
        # stock.low / stock.restored event its change causes. A new effect is one more
        # ``effects.register(name, effect)``: it then sees every write path.
        effects.register("levels", levels.apply_levels)  # before the ledger naming the location
        effects.register("history", history.record_history)
        effects.register("webhooks", outbox.record_product_changes)
        effects.register("alerts", alerts.check_thresholds)
        effects.register("cache", product_cache.invalidate_changes)

        # Bulk writes (app.models.writes) collect the change sets of their signals into one
        # batch, so the effects above run once per write, set-based; deletes run what an
        # open batch collected before they collect the rows to delete.
        writes.collect_changes_with(batch.collecting_changes, batch.flush_open)

        # Services enqueue these by name (app.core.jobs): the tasks sit above them.
        jobs.register(
            tasks.deliver_stock_alerts,
            tasks.deliver_webhooks,
            tasks.run_pipeline_task,
            tasks.analyze_tables,
            tasks.send_welcome_email,
            tasks.expire_reservations,
        )

        # Adapters from Product's signals to the change pipeline (app.receivers). Django
        # sends a proxy model's saves and deletes with the proxy as sender: proxies of
        # Product get the adapters too, also those defined after ready().
        adapters = [
            (pre_save, receivers.product_pre_save, "app.product_pre_save"),
            (post_save, receivers.product_post_save, "app.product_post_save"),
            (pre_delete, receivers.product_pre_delete, "app.product_pre_delete"),
            (post_delete, receivers.product_post_delete, "app.product_post_delete"),
        ]

        def connect_adapters(model) -> None:
            suffix = "" if model is Product else f".{model._meta.label}"
            for signal, receiver, uid in adapters:
                signal.connect(receiver, sender=model, dispatch_uid=uid + suffix)

        def connect_proxy(sender, **kwargs) -> None:
            if sender._meta.proxy and issubclass(sender, Product):
                connect_adapters(sender)

        connect_adapters(Product)
        for model in self.apps.get_models():
            connect_proxy(model)
        class_prepared.connect(connect_proxy, dispatch_uid="app.product_proxies", weak=False)

        # The app's own signals (app.signals) -> webhook outbox rows.
        alerts_opened.connect(
            webhooks.alerts_opened, sender=StockAlert, dispatch_uid="webhooks.alerts_opened"
        )
        alerts_resolved.connect(
            webhooks.alerts_resolved, sender=StockAlert, dispatch_uid="webhooks.alerts_resolved"
        )
        stock_transferred.connect(
            webhooks.stock_transferred, sender=Product, dispatch_uid="webhooks.stock_transferred"
        )
        reservations_changed.connect(
            webhooks.reservations_changed,
            sender=Reservation,
            dispatch_uid="webhooks.reservations_changed",
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

        post_save.connect(
            receivers.user_post_save, sender=get_user_model(), dispatch_uid="app.user_post_save"
        )
        # Cached token identities (app.services.tokens).
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
        # Cached permissions (app.services.permissions): any change of who may do what.
        user_model = get_user_model()
        for through in (
            user_model.user_permissions.through,
            user_model.groups.through,
            Group.permissions.through,
        ):
            m2m_changed.connect(
                receivers.permissions_changed,
                sender=through,
                dispatch_uid=f"app.permissions_changed.m2m.{through._meta.label}",
            )
        for model in (Group, Permission, ContentType):
            for signal, name in ((post_save, "saved"), (post_delete, "deleted")):
                signal.connect(
                    receivers.permissions_changed,
                    sender=model,
                    dispatch_uid=f"app.permissions_changed.{name}.{model._meta.label}",
                )
        # Migrations write through historical models, whose signals name the historical
        # class (unheard above): a data migration's grant, a RenameModel's content type.
        # migrate (and flush) ends with post_migrate, sent once with this app as sender.
        post_migrate.connect(
            receivers.permissions_changed, sender=self, dispatch_uid="app.permissions_migrated"
        )
        # What start-up loaded (Django, every app, these receivers) lives as long as the
        # process: frozen, the collector's full collections no longer walk it. A worker
        # running a 100,000-row supplier import paid 50-90 ms for the one it triggered
        # (9-14 ms frozen). gunicorn's master freezes again what it loads after this (the
        # URLconf, the API schemas: ``pre_fork`` in deploy/gunicorn.conf.py).
        gc.collect()
        gc.freeze()
