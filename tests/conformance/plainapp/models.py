"""Plain Django twins of ``Product``, for the differential test only."""

from __future__ import annotations

from django.core.validators import MinValueValidator
from django.db import models
from django.db.models import Q

from app.models import Product
from app.models.models import default_low_stock_threshold


class PlainProduct(models.Model):
    """``Product``'s fields and constraints; nothing overridden, no receivers."""

    sku = models.CharField(max_length=64, unique=True)
    name = models.CharField(max_length=200)
    price = models.DecimalField(max_digits=12, decimal_places=2, validators=[MinValueValidator(0)])
    stock = models.IntegerField(default=0, validators=[MinValueValidator(0)])
    low_stock_threshold = models.PositiveIntegerField(default=default_low_stock_threshold)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["sku"]
        constraints = [
            models.CheckConstraint(
                condition=Q(price__gte=0), name="plainproduct_price_non_negative"
            ),
            models.CheckConstraint(
                condition=Q(stock__gte=0), name="plainproduct_stock_non_negative"
            ),
        ]
        # Product's indexes too (the product list's sorts): the same schema, so the save()
        # benchmark's anchor pays the same index upkeep.
        indexes = [
            models.Index(fields=["name", "id"], name="plainproduct_name_id"),
            models.Index(fields=["price", "id"], name="plainproduct_price_id"),
            models.Index(fields=["stock", "id"], name="plainproduct_stock_id"),
            models.Index(fields=["updated_at", "id"], name="plainproduct_updated_id"),
            models.Index(
                fields=["id"],
                condition=Q(stock__lt=models.F("low_stock_threshold")),
                name="plainproduct_low_stock",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.sku})"


class PlainProductProxy(PlainProduct):
    class Meta:
        proxy = True


class ProductProxy(Product):
    """A proxy of the real ``Product``: writes through it must be tracked too."""

    class Meta:
        proxy = True
