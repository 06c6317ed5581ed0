"""Rows written before the SKU and name rules existed (or by raw SQL): made valid, then
rewritten with SQL, as an old pipeline run or an import left them."""

from __future__ import annotations

from django.db import connection

from app.models import Product
from tests.factories import ProductFactory


def legacy_product(sku: str, name: str = "Legacy", **fields) -> Product:
    product = ProductFactory(**fields)
    table = connection.ops.quote_name(Product._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET sku = %s, name = %s WHERE id = %s", [sku, name, product.pk]
        )
    return Product.objects.get(pk=product.pk)
