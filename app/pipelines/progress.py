"""Progress and heartbeat of a running pipeline, visible while its transaction is open.

On PostgreSQL the counters are written through a second, autocommit connection, so
``GET /api/pipelines/runs/<id>`` sees them move and ``fail_stale_runs`` sees a fresh heartbeat
while the run's own transaction is still open. SQLite allows one writer at a time and the
run holds the write lock, so there the counters are written only when the run starts and
ends; the run's final status is written in the run's own transaction, so a SQLite run is
either committed as succeeded or, if its process died, rolled back and later failed by
``fail_stale_runs``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from django.db import connections
from django.utils import timezone

from ..models import PipelineRun

logger = logging.getLogger(__name__)

INTERVAL = 1.0  # seconds between progress writes


class Progress:
    def __init__(
        self,
        run: PipelineRun,
        *,
        using: str,
        on_progress: Callable[[PipelineRun], None] | None = None,
    ) -> None:
        self.run = run
        self.using = using
        self.on_progress = on_progress
        self._side = None
        self._last_write = time.monotonic()
        self._live = connections[using].vendor == "postgresql"
        self._failing = False  # the last write failed (logged once until one succeeds)

    def advance(self, rows: int) -> None:
        self.run.rows_done += rows
        self._tick()

    def step_done(self) -> None:
        self.run.steps_done += 1
        self._tick()

    def _tick(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.run)
        if self._live and time.monotonic() - self._last_write >= INTERVAL:
            self._last_write = time.monotonic()
            self._write()

    def _write(self) -> None:
        try:
            if self._side is None:
                self._side = connections.create_connection(self.using)
            with self._side.cursor() as cursor:
                cursor.execute(
                    f"UPDATE {PipelineRun._meta.db_table} SET steps_done = %s, rows_done = %s, "
                    "heartbeat_at = %s WHERE id = %s AND status = %s",
                    [
                        self.run.steps_done,
                        self.run.rows_done,
                        timezone.now(),
                        self.run.pk,
                        PipelineRun.Status.RUNNING,
                    ],
                )
        except Exception:  # progress is best effort; the run itself must not fail for it
            # ... but the heartbeat must go on (``fail_stale_runs`` would take the run for
            # dead and its work would be rolled back): a new connection at the next write.
            if not self._failing:
                logger.exception("Could not record progress of pipeline run %s", self.run.pk)
            self._failing = True
            self.close()
        else:
            if self._failing:
                logger.info("Progress of pipeline run %s recorded again", self.run.pk)
            self._failing = False

    def close(self) -> None:
        side, self._side = self._side, None
        if side is not None:
            try:
                side.close()
            except Exception:  # a connection that failed may fail to close too
                logger.debug("Closing the progress connection failed", exc_info=True)
