"""HTTP views of the app that live outside the Ninja API."""

from __future__ import annotations

import json
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, JsonResponse
from django.http.request import RawPostDataException
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt

from .services.tokens import bearer_user, has_bearer
from .utils.utils import process_pipeline

FAILURE_STATUS = {"invalid": 400, "failed": 422, "abandoned": 409, "stale": 409}


def error_response(
    status: int, detail: str, errors: list | None = None, **extra: Any
) -> JsonResponse:
    return JsonResponse({"detail": detail, "errors": errors or [], **extra}, status=status)


class _CsrfCheck(CsrfViewMiddleware):
    def _reject(self, request, reason):
        return reason


def csrf_failure(request: HttpRequest) -> str | None:
    """Why the request fails CSRF verification, or None (DRF's SessionAuthentication way)."""
    check = _CsrfCheck(lambda req: None)
    check.process_request(request)
    return check.process_view(request, None, (), {})


@method_decorator(csrf_exempt, name="dispatch")  # enforced below for session users only
class ExecutePipelineView(View):
    """``POST /api/pipelines/execute``: run a pipeline spec (JSON body).

    API clients send ``Authorization: Bearer <token>`` (used whenever present, no CSRF);
    otherwise the session user must pass CSRF.
    200 with the result (sync, incl. dry runs), 202 with the status URL (async), 400 for an
    invalid spec, 422 when a step fails (all rolled back), 401/403 for auth.
    """

    http_method_names = ["post"]
    # NUL in a spec reaches the pipeline, which records the run and refuses it (400).
    # Oversized bodies (413) and too deep JSON (400) are refused by InputGuardMiddleware.
    records_refused_input = True

    def post(self, request: HttpRequest) -> JsonResponse:
        # A bearer token decides alone (no CSRF: browsers never send it by themselves);
        # only cookie authentication needs the CSRF check.
        if has_bearer(request):
            user = bearer_user(request)
        elif request.user.is_authenticated:
            user = request.user
            reason = csrf_failure(request)
            if reason:
                return error_response(403, f"CSRF verification failed: {reason}")
        else:
            user = None
        if user is None:
            response = error_response(401, "Authentication required (session or Bearer token).")
            response["WWW-Authenticate"] = 'Bearer realm="stockpipe"'
            return response
        if not user.has_perm("app.run_pipeline"):
            return error_response(403, "You need the run_pipeline permission.")
        try:
            data = json.loads(request.body)
        except RequestDataTooBig:
            return error_response(413, "Request body too large; use the run_pipeline command.")
        except RawPostDataException:  # a form or multipart body, already parsed
            return error_response(400, "Send the spec as a JSON body.")
        except (ValueError, UnicodeDecodeError) as exc:
            return error_response(400, "Body is not valid JSON.", [{"loc": [], "msg": str(exc)}])
        result = process_pipeline(data, user=user)
        error = result.get("error")
        if error:
            return error_response(
                FAILURE_STATUS.get(error["kind"], 500),
                error["detail"],
                error["errors"],
                run_id=result["run_id"],
            )
        if result["status"] == "pending":
            response = JsonResponse(result, status=202)
            response["Location"] = result["status_url"]
            return response
        return JsonResponse(result, status=200)
