"""Project-level entry points kept at the path the layout contract names."""

from __future__ import annotations

from typing import Any

from ..pipelines.service import process_pipeline as _process


def process_pipeline(spec: dict[str, Any] | str | bytes, *, user=None) -> dict[str, Any]:
    """Validate and run a pipeline spec all-or-nothing; return the run's result dict.

    See ``app.pipelines.service.process_pipeline`` (this is its public, thin front door).
    """
    return _process(spec, user=user)
