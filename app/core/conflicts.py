"""Transaction conflicts the database resolves by aborting one side: worth running again.

PostgreSQL aborts one transaction of a lock cycle (``deadlock_detected``) and, under
REPEATABLE READ or SERIALIZABLE, one of two conflicting writers (``serialization_failure``).
Neither says anything is wrong with the work: the same transaction, started again after
the other has committed, succeeds. SQLite never deadlocks here (``transaction_mode``
IMMEDIATE takes the write lock at BEGIN and waits for it).
"""

from __future__ import annotations

from django.db import OperationalError

RETRYABLE_SQLSTATES = {"40P01": "deadlock", "40001": "serialization failure"}


def transient_conflict(error: BaseException) -> str | None:
    """What concurrent transaction aborted ``error``'s ("deadlock", "serialization
    failure"), or None when it failed for a reason of its own."""
    if not isinstance(error, OperationalError):
        return None
    return RETRYABLE_SQLSTATES.get(getattr(error.__cause__, "sqlstate", None))
