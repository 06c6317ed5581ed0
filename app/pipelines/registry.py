"""The step registry: ``op`` name -> step model. Adding a step type is adding one module
under ``app/pipelines/steps/`` whose model class is decorated with ``@register``."""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from .base import StepSpec

_REGISTRY: dict[str, type[StepSpec]] = {}
S = TypeVar("S", bound=type[StepSpec])


def register(model: S) -> S:
    op = model.model_fields["op"].annotation.__args__[0]  # Literal["name"]
    if op in _REGISTRY and _REGISTRY[op] is not model:
        raise ValueError(f"Pipeline step {op!r} is registered twice.")
    _REGISTRY[op] = model
    return model


def step_types() -> dict[str, type[StepSpec]]:
    """Every registered step model by ``op``; imports the ``steps`` package on first use."""
    from . import steps  # here, not on top: each step module imports this one to register

    for module in pkgutil.iter_modules(steps.__path__):
        importlib.import_module(f"{steps.__name__}.{module.name}")
    return dict(_REGISTRY)
