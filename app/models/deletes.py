"""Deleting products set-based, as Django's ``delete()`` would while only the adapters listen.

Django's ``Collector`` sends ``pre_delete`` for each product (in primary-key order), deletes
the rows cascading from them and sets to NULL the keys of the rows kept, deletes the
products, then sends ``post_delete`` (in reverse order). While only the project's adapters
listen and no related row needs an instance (``dispatch.rows_suffice(deleting=True)``),
``delete_rows`` does the same with the adapters' bulk forms (deletion audit, alerts, the
change set) and one statement per related table, whatever the number of products. The
forms get ``stored``, the keys as a JSON array: the objects are the stored rows, so the
deletion audit can be built from them in SQL. Only the rows actually deleted are reported
to ``post_delete``'s forms.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from django.db import connections, transaction
from django.db.models import QuerySet
from django.db.models.signals import post_delete, pre_delete

from ..core.sqlrows import json_in, json_rows
from . import writes
from .dispatch import bulk_forms, related_rows
from .models import Product


def delete_rows(objs: Sequence[Product], *, using: str) -> int:
    """Delete the (locked) products ``objs``; return how many rows went."""
    before, after, related = bulk_forms(pre_delete), bulk_forms(post_delete), related_rows()
    if before is None or after is None or related is None:
        raise RuntimeError("Products are deleted set-based only while rows suffice.")
    if not objs:
        return 0
    objs = sorted(objs, key=lambda obj: obj.pk)
    ids = [json_rows([obj.pk for obj in objs])]
    for form in before:
        form(objs, using=using, stored=ids[0])
    connection = connections[using]
    qn = connection.ops.quote_name
    pk_type = Product._meta.pk.cast_db_type(connection)
    with connection.cursor() as cursor:
        # Collector's order: the cascades, the kept rows' keys, the products.
        for field, cascade in sorted(related, key=lambda item: not item[1]):
            table, column = qn(field.model._meta.db_table), qn(field.column)
            test = f"{column} {json_in(connection, pk_type)}"
            if cascade:
                cursor.execute(f"DELETE FROM {table} WHERE {test}", ids)
            else:
                cursor.execute(f"UPDATE {table} SET {column} = NULL WHERE {test}", ids)
        meta = Product._meta
        pk = qn(meta.pk.column)
        table, test = qn(meta.db_table), f"{pk} {json_in(connection, pk_type)}"
        if connection.vendor != "sqlite" or sqlite3.sqlite_version_info >= (3, 35):
            cursor.execute(f"DELETE FROM {table} WHERE {test} RETURNING {pk}", ids)
            deleted = {row[0] for row in cursor.fetchall()}
        else:
            # No RETURNING before SQLite 3.35: this transaction holds SQLite's write lock,
            # so the rows found now are the rows the DELETE removes.
            cursor.execute(f"SELECT {pk} FROM {table} WHERE {test}", ids)
            deleted = {row[0] for row in cursor.fetchall()}
            cursor.execute(f"DELETE FROM {table} WHERE {test}", ids)
    # post_delete only for the rows this deleted, as Collector does for the rows it
    # collected (a product whose row was gone meanwhile left nothing to report).
    gone = [obj for obj in reversed(objs) if obj.pk in deleted]
    with writes.collecting_changes(using):
        for form in after:
            form(gone, using=using, stored=ids[0])
    return len(deleted)


_GONE = "_deleted_before"  # set by ``lock_stored`` on an instance whose row was gone


def lock_stored(objs: Sequence[Product], *, using: str, origin: object = None) -> list[Product]:
    """Of ``objs`` that Django's ``delete()`` is about to delete (``pre_delete``), those whose
    row is still stored, locked until the deleting transaction ends, so its DELETE removes
    them. Only for ``Model.delete()`` (``origin`` not a ``QuerySet``, whose ``delete()``
    has just read the rows): a stale instance's row may have been deleted long ago; then
    Django deletes nothing and still sends ``post_delete``, and ``deleted_here`` leaves the
    instance out, as ``delete_rows`` reports only the rows it deleted."""
    if isinstance(origin, QuerySet) or not objs:
        return list(objs)
    rows = Product._base_manager.db_manager(using).filter(pk__in=[obj.pk for obj in objs])
    if transaction.get_connection(using).in_atomic_block:  # Collector.delete's: always
        rows = rows.select_for_update()
    stored = set(rows.order_by().values_list("pk", flat=True))
    for obj in objs:
        if obj.pk in stored:
            obj.__dict__.pop(_GONE, None)  # left by a deletion that failed before post_delete
        else:
            obj.__dict__[_GONE] = True
    return [obj for obj in objs if obj.pk in stored]


def deleted_here(objs: Sequence[Product]) -> list[Product]:
    """Of ``objs`` that ``post_delete`` reports, those whose row this deletion removed (not
    marked gone by ``lock_stored``)."""
    return [obj for obj in objs if not obj.__dict__.pop(_GONE, False)]
