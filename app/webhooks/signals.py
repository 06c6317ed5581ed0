"""Moved: the app's signals are declared in ``app.signals`` (re-exported here)."""

from ..signals import pipeline_finished

__all__ = ["pipeline_finished"]
