"""Signals the webhooks listen to that no other module defines."""

from django.dispatch import Signal

# Sent when a pipeline run has stored its final status (succeeded, failed, previewed),
# inside the run's transaction for successful runs. kwargs: run (PipelineRun), using.
pipeline_finished = Signal()
