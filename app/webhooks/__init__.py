"""Signed outgoing webhooks for inventory events: outbox in the change's transaction,
delivery after commit by background tasks, retried with backoff, ordered per product.

* ``signing``: ``sign`` and ``verify_signature`` (receivers can copy that module).
* ``outbox``: builds events and writes one outbox row per subscription, set-based.
* ``services``: subscriptions, delivery (lease, backoff, dead letter), sweeper, redeliver.
* ``transport``: the POST itself, to vetted public addresses only (SSRF guard).
* ``receivers``: thin signal receivers, connected in ``AppConfig.ready()``.
* ``signals``: ``pipeline_finished``, sent when a pipeline run reaches a final status.
"""
