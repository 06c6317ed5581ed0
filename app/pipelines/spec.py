"""The pipeline spec: a pydantic model (source of the JSON Schema) and located validation.

``PipelineSpec.steps`` is a union of every registered step model, discriminated by ``op``.
``validate_spec`` turns pydantic's errors into ``{"loc": [...], "msg": ...}`` items whose
location reads like the spec itself: ``["steps", 3, "deltas", "LAP-1"]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

from pydantic import Field, ValidationError

from .base import Label, Strict
from .registry import step_types

STEP_TYPES = step_types()
Step = Annotated[Union[tuple(STEP_TYPES.values())], Field(discriminator="op")]  # noqa: UP007


class PipelineSpec(Strict):
    """An ordered list of inventory operations, validated as a whole and run all-or-nothing."""

    name: Label = ""
    dry_run: bool = False
    mode: Literal["sync", "async"] = "sync"
    steps: list[Step] = Field(min_length=1, max_length=1000)
    policy: Literal["all_or_nothing", "skip_invalid_rows"] = Field(
        default="all_or_nothing",
        description="skip_invalid_rows: apply the valid rows of CSV/XLSX feeds, keep the "
        "invalid ones with their reasons in the run's result (rejected rows)",
    )
    fingerprint: str | None = Field(
        default=None,
        pattern=r"^[0-9a-f]{64}$",
        description="a preview's fingerprint: run only if the spec, its profiles and the "
        "products it reads are as they were then (else fails with kind 'stale', nothing done)",
    )


class SpecError(Exception):
    """The spec is invalid; ``errors`` locates every problem. Nothing has run."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        self.errors = errors
        super().__init__(f"{len(errors)} error(s) in pipeline spec")


def _clean(error: dict[str, Any]) -> dict[str, Any]:
    loc = list(error["loc"])
    kind = error["type"]
    # pydantic puts the discriminator value into the path: steps.3.adjust_stock.deltas...
    if len(loc) > 2 and loc[0] == "steps" and isinstance(loc[1], int) and loc[2] in STEP_TYPES:
        del loc[2]
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        loc.append("op")
    if loc and loc[-1] == "[key]":
        loc.pop()
    msg = error["msg"]
    if kind == "union_tag_invalid":
        msg = f"unknown op {error['input'].get('op')!r}; known: {', '.join(STEP_TYPES)}"
    elif kind == "union_tag_not_found":
        msg = f"missing 'op'; known: {', '.join(STEP_TYPES)}"
    elif msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    return {"loc": loc, "msg": msg}


def validate_spec(
    data: Any, *, allow_files: bool = False, base_dir: str | Path | None = None
) -> PipelineSpec:
    """Validate a parsed JSON spec; raise ``SpecError`` listing every located error.

    ``allow_files`` lets ``upsert_products`` read ``csv_file`` (relative to ``base_dir``): only
    trusted callers such as the management command may set it.
    """
    if not isinstance(data, dict):
        raise SpecError([{"loc": [], "msg": "the pipeline spec must be a JSON object"}])
    try:
        return PipelineSpec.model_validate(
            data, context={"allow_files": allow_files, "base_dir": base_dir}
        )
    except ValidationError as exc:
        raise SpecError([_clean(e) for e in exc.errors()]) from None
