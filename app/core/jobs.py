"""Background tasks by name, for the layers below ``app.tasks``.

The tasks (``app.tasks``) call services; services enqueue those tasks. So that neither
imports the other upwards, ``AppConfig.ready()`` registers each task here and services look
it up by name when they enqueue.
"""

from __future__ import annotations

from typing import Any

_tasks: dict[str, Any] = {}


def register(*tasks: Any) -> None:
    """Make ``tasks`` (Django Tasks ``Task`` objects) enqueueable by their function's name."""
    for task in tasks:
        _tasks[task.func.__name__] = task


def task(name: str) -> Any:
    """The registered task ``name`` (``KeyError``: ``ready()`` did not register it)."""
    return _tasks[name]
