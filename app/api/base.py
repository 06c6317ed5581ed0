"""The project's NinjaAPI: JSON errors for unknown URLs and wrong methods, and an OpenAPI
document that also describes ``POST /api/pipelines/execute`` (a plain Django view)."""

from __future__ import annotations

import functools
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt
from ninja import NinjaAPI

from ..pipelines.spec import PipelineSpec
from .errors import ErrorOut, json_error


def _json_not_allowed(view):
    """Ninja answers a wrong method with an empty HTML 405; give it the error shape."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = view(request, *args, **kwargs)
        if isinstance(response, HttpResponseNotAllowed):
            allowed = response["Allow"]
            response = json_error(405, f"Method {request.method} not allowed (use {allowed}).")
            response["Allow"] = allowed
        return response

    return wrapper


@csrf_exempt
def unknown_api_url(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    return json_error(404, f"No API endpoint at {request.path}.")


class StockpipeAPI(NinjaAPI):
    def _get_urls(self) -> list:
        patterns = super()._get_urls()
        for pattern in patterns:
            pattern.callback = _json_not_allowed(pattern.callback)
        # Last: anything else under /api/ is a JSON 404, not Django's HTML page.
        patterns.append(re_path(r"^.*$", unknown_api_url, name="unknown"))
        return patterns

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        prefix = path_prefix if path_prefix is not None else self.get_root_path(path_params or {})
        add_execute_pipeline(schema, prefix)
        return schema


def _pipeline_spec_schema() -> dict[str, Any] | None:
    """The pipeline spec's JSON Schema, if the pipeline package provides ``PipelineSpec``."""
    return PipelineSpec.model_json_schema(ref_template="#/components/schemas/{model}")


def add_execute_pipeline(schema: dict, prefix: str) -> None:
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    if "ErrorOut" not in components:  # normally already there: every operation uses it
        error_schema = ErrorOut.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(error_schema.pop("$defs", {}))
        components["ErrorOut"] = error_schema
    body: dict[str, Any] = {"type": "object"}
    spec = _pipeline_spec_schema()
    if spec is not None:
        for name, definition in spec.pop("$defs", {}).items():
            components.setdefault(name, definition)
        components["PipelineSpec"] = spec
        body = {"$ref": "#/components/schemas/PipelineSpec"}
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}}
    result = {"content": {"application/json": {"schema": {"type": "object"}}}}
    schema["paths"][f"{prefix}pipelines/execute"] = {
        "post": {
            "operationId": "app_views_execute_pipeline",
            "summary": "Execute Pipeline",
            "description": (
                "Run a pipeline spec (JSON). Needs the app.run_pipeline permission. Spec "
                "errors are 400 and name the step and field (a feed's row and column). A "
                "dry run's result carries a `fingerprint`: the same spec sent with it is "
                "applied only if nothing it read changed since, else 409 (kind `stale`)."
            ),
            "tags": ["pipelines"],
            "requestBody": {"content": {"application/json": {"schema": body}}, "required": True},
            "responses": {
                "200": {"description": "Finished (or previewed with dry_run)", **result},
                "202": {"description": "Accepted: running asynchronously", **result},
                "400": {"description": "Invalid spec", **error},
                "401": {"description": "Unauthorized", **error},
                "403": {"description": "Forbidden", **error},
                "405": {"description": "Method not allowed", **error},
                "409": {"description": "Conflict (a stale preview fingerprint)", **error},
                "413": {"description": "Body too large", **error},
                "422": {"description": "Invalid input", **error},
                "429": {"description": "Too many requests", **error},
                "500": {"description": "Pipeline error", **error},
            },
            "security": [{"BearerToken": []}, {"SessionCookie": []}],
        }
    }
