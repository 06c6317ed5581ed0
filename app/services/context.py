"""Where ``change_context`` has always been imported from; it lives in ``app.core.context``
(the tracking layer below the services reads it)."""

from ..core.context import ChangeContext, change_context, current_change_context

__all__ = ["ChangeContext", "change_context", "current_change_context"]
