"""The ordered registry of effects: what happens because products changed.

An effect is ``effect(changes, *, using)``: it reads a ``ChangeSet`` (Python rows or the
SQL route's staged rows alike, see ``app.tracking.changes``) and writes its consequences
in the transaction of the change. Effects are registered once, in order, in
``AppConfig.ready()``; every write path's change set goes through all of them, in that
order, when its change batch ends (``app.tracking.batch``): those registered when the
change was made (``current``), so ``muted`` leaves out the effect of the changes made in
its block, whenever their batch runs them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from .changes import ChangeSet

Effect = Callable[..., None]

_effects: dict[str, Effect] = {}
_current: tuple[Effect, ...] | None = None  # ``_effects`` in order, until it changes


def _changed() -> None:
    global _current
    _current = None


def register(name: str, effect: Effect) -> None:
    """Add ``effect`` after those registered so far. Registering a name again replaces
    its effect in place (so a second ``ready()`` changes nothing)."""
    _effects[name] = effect
    _changed()


def unregister(name: str) -> Effect | None:
    _changed()
    return _effects.pop(name, None)


@contextmanager
def muted(name: str) -> Iterator[bool]:
    """Leave out effect ``name`` for the duration of the block (process-wide, like
    ``app.signals.muted``), then put it back in its place. Yields whether it was there."""
    order = list(_effects)
    effect = _effects.pop(name, None)
    _changed()
    try:
        yield effect is not None
    finally:
        if effect is not None:
            _effects[name] = effect
            for other in order[order.index(name) + 1 :]:
                if other in _effects:
                    _effects[other] = _effects.pop(other)  # move behind it again
            _changed()


def registered() -> list[tuple[str, Effect]]:
    return list(_effects.items())


def current() -> tuple[Effect, ...]:
    """The effects registered now, in order: what a change made now goes through. The same
    tuple while the registry does not change (a batch compares them per write)."""
    global _current
    if _current is None:
        _current = tuple(_effects.values())
    return _current


def run(changes: ChangeSet, chosen: tuple[Effect, ...] | None = None) -> None:
    """Apply ``chosen`` (default: those registered now) to ``changes``, in order."""
    for effect in current() if chosen is None else chosen:
        effect(changes, using=changes.using)
