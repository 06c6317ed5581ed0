"""The change pipeline: every product write becomes a change set; effects consume it.

* ``changes``: the change set type (Python rows, or the SQL route's staged rows).
* ``batch``: collects a block's change sets and hands them to the effects at its end.
* ``effects``: the ordered effect registry (filled in ``AppConfig.ready()``).
* ``history``: the history and ledger effect, the only writer of ``PriceHistory`` and
  ``StockMovement`` rows.
* ``adapters``: marks the project's signal receivers, so bulk writes know when only
  they listen.

A price change: ``post_save`` -> ``app.receivers.product_post_save`` -> ``batch.record``
-> ``effects.run`` -> ``history.record_history`` (the ``INSERT`` into ``PriceHistory``).
"""
