"""The ordered registry of effects: what happens because products changed.

An effect is ``effect(changes, *, using)``: it reads a ``ChangeSet`` (Python rows or the
SQL route's staged rows alike, see ``app.tracking.changes``) and writes its consequences
in the transaction of the change. Effects are registered once, in order, in
``AppConfig.ready()``; every write path's change set goes through all of them, in that
order, when its change batch ends (``app.tracking.batch``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .changes import ChangeSet

Effect = Callable[..., None]

_effects: dict[str, Effect] = {}


def register(name: str, effect: Effect) -> None:
    """Add ``effect`` after those registered so far. Registering a name again replaces
    its effect in place (so a second ``ready()`` changes nothing)."""
    _effects[name] = effect


def unregister(name: str) -> Effect | None:
    return _effects.pop(name, None)


@contextmanager
def muted(name: str) -> Iterator[bool]:
    """Leave out effect ``name`` for the duration of the block (process-wide, like
    ``app.signals.muted``), then put it back in its place. Yields whether it was there."""
    order = list(_effects)
    effect = _effects.pop(name, None)
    try:
        yield effect is not None
    finally:
        if effect is not None:
            _effects[name] = effect
            for other in order[order.index(name) + 1 :]:
                if other in _effects:
                    _effects[other] = _effects.pop(other)  # move behind it again


def registered() -> list[tuple[str, Effect]]:
    return list(_effects.items())


def run(changes: ChangeSet) -> None:
    """Apply every registered effect to ``changes``, in registration order."""
    for effect in tuple(_effects.values()):
        effect(changes, using=changes.using)
