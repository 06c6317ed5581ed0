"""Signed outgoing webhooks for inventory events: outbox in the change's transaction,
delivery after commit by background tasks, retried with backoff, ordered per product.

* ``signing``: the Standard Webhooks signature (``webhook-signature``) and secrets, and the
  original ``sign``/``verify_signature`` of ``X-Stockpipe-Signature`` (copyable as it is).
* ``outbox``: builds events and writes one outbox row per subscription, set-based; its
  ``record_product_changes`` is the change pipeline's webhook effect (``app.tracking``).
* ``services``: subscriptions (secret rotation, 410 disabling, re-enabling), delivery
  (lease, backoff, Retry-After, dead letter), sweeper, redeliver.
* ``transport``: the POST itself, to vetted public addresses only (SSRF guard).
* ``receivers``: thin receivers of ``app.signals`` (alerts, pipeline runs) and of
  subscription changes, connected in ``AppConfig.ready()``.
* ``signals``: re-exports ``app.signals.pipeline_finished`` for older imports.
"""
