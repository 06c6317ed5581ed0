"""API tokens of the current user: create (session only, throttled, secret shown once),
list and revoke."""

from __future__ import annotations

from django.http import HttpRequest
from django.shortcuts import get_object_or_404
from ninja import Router, Status

from ..models import ApiToken
from ..selectors.replica import replica_reads
from ..services.tokens import create_token, revoke_token
from .auth import AUTH, SESSION_ONLY, token_throttle
from .errors import responses
from .schemas import NewTokenOut, ObjectId, PageNumber, PageSize, TokenIn, TokenPage, paginate

router = Router(tags=["tokens"], auth=AUTH)


@router.post(
    "",
    response={201: NewTokenOut, **responses(400, 401, 403, 422, 429)},
    auth=SESSION_ONLY,
    throttle=[token_throttle],
)
def create_api_token(request: HttpRequest, payload: TokenIn):
    """Create a token for the logged-in user. A token cannot mint tokens: log in first."""
    token, raw = create_token(request.auth, payload.name)
    return Status(
        201,
        {
            "id": token.pk,
            "name": token.name,
            "prefix": token.prefix,
            "created_at": token.created_at,
            "last_used_at": token.last_used_at,
            "revoked_at": token.revoked_at,
            "token": raw,
        },
    )


@router.get("", response={200: TokenPage, **responses(401, 422)})
def list_api_tokens(
    request: HttpRequest,
    include_revoked: bool = False,
    page: PageNumber = 1,
    page_size: PageSize = 50,
):
    """Your tokens (never the secrets), newest first."""
    replica_reads(request)
    tokens = ApiToken.objects.filter(user=request.auth).order_by("-created_at", "-id")
    if not include_revoked:
        tokens = tokens.filter(revoked_at__isnull=True)
    return paginate(tokens, page, page_size)


@router.delete("/{token_id}", response={204: None, **responses(401, 403, 404, 422)})
def revoke_api_token(request: HttpRequest, token_id: ObjectId):
    """Revoke one of your tokens; it stops working immediately."""
    revoke_token(get_object_or_404(ApiToken, pk=token_id, user=request.auth))
    return Status(204, None)
