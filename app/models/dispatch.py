"""Signal dispatch of Product writes: when bulk writes may skip per-object signals.

Signals are the public contract: a receiver connected with ``@receiver`` or ``.connect()``
sees every write path. The project's own receivers only turn a signal into a change set
(``app.receivers``); each is marked with ``bulk_form``, its equivalent for a whole list
of objects. A bulk write calls those forms once instead of sending the signal per object
when every live receiver of the signal has one (``bulk_forms``); the test depends on which
receivers are connected, never on which effects exist. It lives with the models because
the write paths (``app.models.writes``) ask it; it imports nothing above them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db.models import CASCADE, DO_NOTHING, SET_NULL, ForeignKey
from django.db.models.deletion import Collector, get_candidate_relations_to_delete
from django.db.models.signals import (
    ModelSignal,
    post_delete,
    post_init,
    post_save,
    pre_delete,
    pre_init,
    pre_save,
)

from ..signals import live_receivers
from .models import Product

# form(objs, *, using, **signal arguments): the effect of sending the signal for each of
# ``objs`` (in order) to the receiver it is marked on (``created``/``update_fields`` for
# saves).
BulkForm = Callable[..., None]


def bulk_form(form: BulkForm) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a receiver as one of the project's adapters, with its form for many objects."""

    def mark(receiver: Callable[..., Any]) -> Callable[..., Any]:
        receiver.bulk_form = form
        return receiver

    return mark


def bulk_forms(signal: ModelSignal) -> list[BulkForm] | None:
    """The bulk forms of the receivers ``signal`` would call for a ``Product``, in
    connection order; ``None`` when any of them has none (a user's receiver, an async one,
    or an adapter connected twice): then send per object."""
    sync, asynchronous = live_receivers(signal, Product)
    if asynchronous:
        return None
    forms: list[BulkForm] = []
    for receiver in sync:
        form = getattr(receiver, "bulk_form", None)
        if form is None or form in forms:
            return None
        forms.append(form)
    return forms


def saves_are_bulk() -> bool:
    """True when neither ``pre_save`` nor ``post_save`` of ``Product`` reaches a receiver
    outside the project: bulk writers may then skip building full instances for them."""
    return bulk_forms(pre_save) is not None and bulk_forms(post_save) is not None


def rows_suffice(*, deleting: bool = False) -> bool:
    """True when a ``Product`` write needs no instances at all: only the project's adapters
    listen to saves (``deleting``: to deletes, and the related rows go without instances
    too, ``related_rows``) and nobody to instance creation. Set-based SQL may then do the
    write, describing it as a change set."""
    if deleting:
        adapters_only = (
            bulk_forms(pre_delete) is not None
            and bulk_forms(post_delete) is not None
            and related_rows() is not None
        )
    else:
        adapters_only = saves_are_bulk()
    return (
        adapters_only
        and not pre_init.has_listeners(Product)
        and not post_init.has_listeners(Product)
    )


def related_rows() -> list[tuple[ForeignKey, bool]] | None:
    """What deleting products does to the rows pointing at them, as Django's ``Collector``
    would do it without loading them: ``(foreign key, cascade)``, the rows deleted
    (``CASCADE`` to a model nobody watches, ``Collector.can_fast_delete``) or their key set
    to NULL (``SET_NULL``). ``None`` when some relation needs instances (or a check, like
    ``PROTECT``): then only Django's ``delete()`` does it right."""
    found = []
    collector = Collector(using="default")
    for relation in get_candidate_relations_to_delete(Product._meta):
        field, on_delete = relation.field, relation.on_delete
        if on_delete is DO_NOTHING:
            continue
        if on_delete is SET_NULL:
            found.append((field, False))
        elif on_delete is CASCADE and collector.can_fast_delete(
            relation.related_model, from_field=field
        ):
            found.append((field, True))
        else:
            return None
    return found


def saves_tracked() -> bool:
    """Whether a ``post_save`` adapter is connected (not muted): a write that skips the
    signal records its change set only then, as the adapter would."""
    return bool(bulk_forms(post_save))
