"""Django's PostgreSQL backend (psycopg 3), with ``CONN_HEALTH_CHECKS`` that asks the server
only when the server has said something.

Django checks a kept connection once per request, before its first query, with a
``SELECT 1``: a round trip per request, about a tenth of a worker's time on a short API
request. A server that ends a connection (restart, ``pg_terminate_backend``, an idle
timeout, PgBouncer going away, a crashed backend) sends its last message and closes the
socket, so the socket turns readable; an idle connection between two requests has nothing
to read. Here the check looks at the socket first (``select`` with no wait): nothing to
read, the connection is used; something to read, Django's ``SELECT 1`` decides as before.
A connection lost without a word (a network cut with no FIN or RST) was not caught by the
``SELECT 1`` either: it waited for TCP to give up.
"""

from __future__ import annotations

import select

from django.db.backends.postgresql import base
from psycopg.pq import TransactionStatus

IDLE = TransactionStatus.IDLE


class DatabaseWrapper(base.DatabaseWrapper):
    def is_usable(self) -> bool:
        """No round trip while the server has sent nothing since the last query."""
        connection = self.connection
        if connection is None or connection.closed:
            return False
        if connection.broken or connection.info.transaction_status != IDLE:
            return super().is_usable()  # not a quiet idle connection: let the server say
        try:
            readable, _, _ = select.select([connection.fileno()], [], [], 0)
        except (OSError, ValueError):  # no socket any more
            return False
        return not readable or super().is_usable()
