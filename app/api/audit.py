"""The deletion audit, read-only: what was deleted, when, by whom, with its snapshot.

Needs ``app.view_deletionaudit``. Newest first, with cursor pagination (stable while
deletions keep coming): pass ``next_after`` back as ``after``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field, StringConstraints

from ..core.pagination import cursor_page
from ..models import DeletionAudit
from ..selectors.replica import replica_reads
from .auth import AUTH, require_perm
from .errors import responses
from .schemas import ObjectId

router = Router(tags=["audit"], auth=AUTH)

ModelLabel = Annotated[
    str,
    StringConstraints(max_length=100, pattern=r"^[A-Za-z_][\w]*\.[A-Za-z_][\w]*$"),
    Field(description='Only deletions of this model, e.g. "app.Product"'),
]
ObjectPk = Annotated[
    str,
    StringConstraints(min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$"),
    Field(description="Only deletions of the object with this primary key"),
]


class DeletionOut(Schema):
    id: int
    model_label: str
    object_pk: str
    object_repr: str
    snapshot: dict[str, Any]
    deleted_at: datetime
    changed_by: str | None
    source: str

    @staticmethod
    def resolve_changed_by(obj) -> str | None:
        return obj.changed_by.get_username() if obj.changed_by_id else None


class DeletionPage(Schema):
    """Cursor pagination, newest first: pass ``next_after`` as ``after`` for the next page."""

    items: list[DeletionOut]
    next_after: int | None


@router.get("/deletions", response={200: DeletionPage, **responses(401, 403, 422)})
def list_deletions(
    request: HttpRequest,
    model: ModelLabel = None,
    object_pk: ObjectPk = None,
    after: Annotated[
        ObjectId, Field(description="Cursor: the `next_after` of the last page")
    ] = None,
    limit: Annotated[int, Field(ge=1, le=200)] = 50,
):
    """Deleted objects, newest first, each with the JSON snapshot taken before deletion."""
    require_perm(request, "app.view_deletionaudit")
    replica_reads(request)  # after the permission check, which reads the primary
    rows = DeletionAudit.objects.select_related("changed_by").order_by("-id")
    if model:
        rows = rows.filter(model_label=model)
    if object_pk:
        rows = rows.filter(object_pk=object_pk)
    if after:
        rows = rows.filter(id__lt=after)
    return cursor_page(rows, limit, lambda audit: audit.pk)
