"""stockpipe's own signals, and helpers for code that hooks into signals.

Signals declared here (sent inside the transaction of the change):

* ``alerts_opened`` / ``alerts_resolved`` (sender ``StockAlert``): kwargs ``alerts``
  (list of ``StockAlert``), ``using``.
* ``stock_transferred`` (sender ``Product``): transfers between two locations
  (``app.services.stock.transfer_stock``, ``transfer_many``). kwargs ``transfers`` (list of
  ``app.services.stock.Transfer``, each naming its ``product_id``), ``using``.
* ``reservations_changed`` (sender ``Reservation``): reservations were created, committed,
  released or expired. kwargs ``action`` (that word), ``reservations``, ``using``.
* ``pipeline_finished`` (sender ``PipelineRun``): a run stored its final status (succeeded,
  failed, previewed); inside the run's transaction for successful runs. kwargs ``run``,
  ``using``.

``listened(signal, sender, using=...)`` says whether a send would reach a receiver that
acts: the project's own receivers are marked ``@acts_when(test)`` (the webhook receivers
act only when the event has subscribers), so the alerts effect builds ``StockAlert``
instances only when someone reads them.

Receivers of Django's model signals for ``Product``: both styles work and see every write
path (``save()``, queryset ``update``/``bulk_update``/
``bulk_create``, admin, pipelines)::

    @receiver(post_save, sender=Product)
    def on_product_saved(sender, instance, created, **kwargs): ...

    post_save.connect(on_product_saved, sender=Product, dispatch_uid="myapp.on_product_saved")
    post_save.disconnect(on_product_saved, sender=Product, dispatch_uid="myapp.on_product_saved")
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from django.dispatch import Signal

alerts_opened = Signal()
alerts_resolved = Signal()
pipeline_finished = Signal()
stock_transferred = Signal()
reservations_changed = Signal()


@contextmanager
def muted(
    signal: Signal,
    receiver: Callable | None = None,
    *,
    sender: type | None = None,
    dispatch_uid: str | None = None,
) -> Iterator[bool]:
    """Disconnect a receiver for the duration of the block, then reconnect it, even on error.

    Yields whether the receiver was connected. Signals are process-wide: the receiver is
    muted for every thread while the block runs, so use it for bulk imports and scripts,
    not inside request handling.
    """
    disconnected = signal.disconnect(receiver, sender=sender, dispatch_uid=dispatch_uid)
    try:
        yield disconnected
    finally:
        if disconnected:
            signal.connect(receiver, sender=sender, dispatch_uid=dispatch_uid, weak=False)


def acts_when(test: Callable[..., bool]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark one of the project's receivers with ``test(using)``: whether a signal sent now
    would make it do anything (its webhook event has subscribers, say). ``listened`` asks it,
    so that a sender may skip building what nobody would read."""

    def mark(receiver: Callable[..., Any]) -> Callable[..., Any]:
        receiver.acts_when = test
        return receiver

    return mark


def live_receivers(signal: Signal, sender: type) -> tuple[list[Callable], list[Callable]]:
    """The receivers a send from ``sender`` would call now: (synchronous, asynchronous).

    Django has no public way to ask this; ``Signal._live_receivers`` (this shape since
    Django 5.0) is read here alone, so an upgrade that changes it breaks one function,
    and ``tests/foundation/test_signal_hooks.py`` says so."""
    sync, asynchronous = signal._live_receivers(sender)
    return list(sync), list(asynchronous)


def listened(signal: Signal, sender: type, *, using: str) -> bool:
    """Whether sending ``signal`` from ``sender`` now reaches a receiver that acts: any
    receiver not marked with ``acts_when``, or a marked one whose test says it would."""
    sync, asynchronous = live_receivers(signal, sender)
    if asynchronous:
        return True
    for receiver in sync:
        test = getattr(receiver, "acts_when", None)
        if test is None or test(using):
            return True
    return False
