"""Pipelines: an ordered list of inventory operations, validated as a whole, run all-or-nothing.

* ``spec``: the pydantic model of a pipeline (its JSON Schema goes into the OpenAPI document)
  and ``validate_spec``, which reports every error with its location.
* ``registry`` + ``steps/``: one small module per step type.
* ``writer``: the set-based unit of work the steps share; every write goes through
  ``app.models.writes`` so history, ledger, alerts and signals equal per-object ``save()``.
* ``service``: records a ``PipelineRun``, runs it in one transaction, reports progress.
* ``selectors``: read-side views of runs.
"""
