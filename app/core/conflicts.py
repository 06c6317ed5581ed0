"""Transaction conflicts the database resolves by aborting one side: worth running again.

PostgreSQL aborts one transaction of a lock cycle (``deadlock_detected``) and, under
REPEATABLE READ or SERIALIZABLE, one of two conflicting writers (``serialization_failure``).
Neither says anything is wrong with the work: the same transaction, started again after
the other has committed, succeeds. SQLite never deadlocks here (``transaction_mode``
IMMEDIATE takes the write lock at BEGIN and waits for it).
"""

from __future__ import annotations

from django.db import OperationalError

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def is_transient_conflict(error: BaseException) -> bool:
    """Whether ``error`` aborted its transaction only because of a concurrent one."""
    return (
        isinstance(error, OperationalError)
        and getattr(error.__cause__, "sqlstate", None) in RETRYABLE_SQLSTATES
    )
