"""Inventory models.

``Product`` remembers the values it was loaded with, so a save knows the old price and
stock without a SELECT; its default manager routes bulk writes through the same change
tracking as ``save()`` (see ``app.services.tracking``).
"""

from __future__ import annotations

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models, router, transaction
from django.db.models import Q

from .. import conf
from ..core.domain import (
    MAX_STOCK,
    NAME_MAX_LENGTH,
    SKU_MAX_LENGTH,
    check_product_rules,
    validate_name,
    validate_sku,
)
from ..core.encoding import FastJSONEncoder
from .querysets import ProductQuerySet

TRACKED_FIELDS = ("price", "stock", "low_stock_threshold")
# MAX_STOCK (re-exported by app.models) lives with the other field rules in app.core.domain.


def default_low_stock_threshold() -> int:
    return conf.low_stock_threshold()


class Product(models.Model):
    # Field rules: app.core.domain (the API, pipelines and forms use the same functions).
    sku = models.CharField(max_length=SKU_MAX_LENGTH, unique=True, validators=[validate_sku])
    name = models.CharField(max_length=NAME_MAX_LENGTH, validators=[validate_name])
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    stock = models.IntegerField(
        default=0, validators=[MinValueValidator(0), MaxValueValidator(MAX_STOCK)]
    )
    low_stock_threshold = models.PositiveIntegerField(
        default=default_low_stock_threshold, validators=[MaxValueValidator(MAX_STOCK)]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ProductQuerySet.as_manager()

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(condition=Q(price__gte=0), name="product_price_non_negative"),
            models.CheckConstraint(condition=Q(stock__gte=0), name="product_stock_non_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"

    @property
    def is_low_stock(self) -> bool:
        return self.stock < self.low_stock_threshold

    @classmethod
    def from_db(cls, db, field_names, values):
        instance = super().from_db(db, field_names, values)
        instance._loaded = dict(zip(field_names, values, strict=True))
        return instance

    def loaded_value(self, attname: str):
        """The value this instance had when read from the database (or last saved)."""
        loaded = getattr(self, "_loaded", None)
        if loaded is None:
            raise KeyError(attname)
        return loaded[attname]

    def changed_fields(self) -> list[str]:
        loaded = getattr(self, "_loaded", None) or {}
        return [
            f.attname
            for f in self._meta.concrete_fields
            if f.attname in loaded and loaded[f.attname] != getattr(self, f.attname)
        ]

    def remember_current_values(self) -> None:
        self._loaded = {f.attname: getattr(self, f.attname) for f in self._meta.concrete_fields}
        self._before_write = None

    def save(self, *args, **kwargs) -> None:
        # SKU and name rules (app.core.domain); a legacy row's unchanged values pass.
        check_product_rules(self, kwargs.get("update_fields"))
        using = kwargs.get("using") or router.db_for_write(type(self), instance=self)
        if (
            kwargs.get("update_fields") is None
            and not self._state.adding
            and getattr(self, "_loaded", None) is not None
            and not kwargs.get("force_insert")
        ):
            # Write only what changed, so a stale instance cannot undo a concurrent stock move.
            kwargs["update_fields"] = [*self.changed_fields(), "updated_at"]
        with transaction.atomic(using=using):
            super().save(*args, **kwargs)
        self.remember_current_values()

    def _do_update(self, base_qs, using, pk_val, values, update_fields, forced_update):
        if not values:
            return super()._do_update(base_qs, using, pk_val, values, update_fields, forced_update)
        from ..services.tracking import guarded_update

        return guarded_update(self, base_qs, pk_val, values)


class ChangeSource(models.Model):
    """Who and what made a change: the user (if known) and the entry point."""

    changed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    source = models.CharField(max_length=100, default="shell")

    class Meta:
        abstract = True


class PriceHistory(ChangeSource):
    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="price_history"
    )
    sku = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    old_price = models.DecimalField(max_digits=12, decimal_places=2)
    new_price = models.DecimalField(max_digits=12, decimal_places=2)
    changed_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-changed_at", "-id"]
        verbose_name_plural = "price history"
        indexes = [models.Index(fields=["product", "changed_at"], name="pricehistory_product_time")]

    def __str__(self) -> str:
        return f"{self.sku}: {self.old_price} -> {self.new_price}"


class StockMovement(ChangeSource):
    """The stock ledger: every change of a product's stock, so stock == sum(delta)."""

    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="stock_movements"
    )
    sku = models.CharField(max_length=64, db_index=True)
    delta = models.IntegerField()
    stock_after = models.IntegerField()
    reason = models.CharField(max_length=200, blank=True, default="")
    idempotency_key = models.CharField(max_length=200, null=True, blank=True, unique=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.sku}: {self.delta:+d} -> {self.stock_after}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"


class StockAlert(models.Model):
    """One low-stock episode of a product: opened on the way down, resolved on restock."""

    product = models.ForeignKey(
        Product, null=True, blank=True, on_delete=models.SET_NULL, related_name="stock_alerts"
    )
    sku = models.CharField(max_length=64, db_index=True)
    name = models.CharField(max_length=200)
    stock = models.IntegerField()
    threshold = models.IntegerField()
    opened_at = models.DateTimeField(db_index=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    delivery_status = models.CharField(
        max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True, default="")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["product"],
                condition=Q(resolved_at__isnull=True, product__isnull=False),
                name="one_open_stock_alert_per_product",
            )
        ]
        indexes = [
            models.Index(
                fields=["delivery_status", "next_attempt_at"], name="stockalert_delivery_queue"
            )
        ]

    def __str__(self) -> str:
        return f"Low stock {self.sku}: {self.stock} < {self.threshold}"

    @property
    def is_open(self) -> bool:
        return self.resolved_at is None


class DeletionAudit(ChangeSource):
    """What was deleted, by whom, with a JSON snapshot of the row and its history."""

    model_label = models.CharField(max_length=100)
    object_pk = models.CharField(max_length=64)
    object_repr = models.CharField(max_length=300)
    snapshot = models.JSONField()
    deleted_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-deleted_at", "-id"]

    def __str__(self) -> str:
        return f"deleted {self.model_label} {self.object_repr}"


class PipelineRun(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"
        PREVIEWED = "previewed"

    name = models.CharField(max_length=200, blank=True, default="")
    # Python callers may pass Decimals: stored as their exact text. Specs can be large.
    spec = models.JSONField(encoder=FastJSONEncoder)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    dry_run = models.BooleanField(default=False)
    mode = models.CharField(max_length=10, default="sync")
    result = models.JSONField(null=True, blank=True)
    error = models.JSONField(null=True, blank=True)
    steps_total = models.PositiveIntegerField(default=0)
    steps_done = models.PositiveIntegerField(default=0)
    rows_total = models.PositiveIntegerField(default=0)
    rows_done = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [("run_pipeline", "Can run inventory pipelines")]

    def __str__(self) -> str:
        return f"Pipeline run {self.pk} {self.name} ({self.status})"


class ApiToken(models.Model):
    """A bearer token; only its SHA-256 digest is stored, the token is shown once."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens"
    )
    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12, db_index=True)
    key_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}...)"
