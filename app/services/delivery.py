"""One delivery state machine for everything stockpipe sends (alert e-mails, webhooks).

A deliverable row carries its own state: a status (pending, then done or given up), the
number of attempts, the last error and when the next attempt is due. The row is the truth;
tasks only trigger work, and a sweeper finds rows whose trigger was lost.

    pending --claim--> (attempt) --success--> done
       ^                   |
       +--retry at backoff-+--max attempts or permanent error--> given up --requeue--> pending
       |                   |
       +------park---------+  (the destination is switched off: due again once it is back)

``claim`` is a compare-and-set UPDATE that also sets a lease (``next_attempt_at`` in
``STOCKPIPE_DELIVERY_LEASE`` seconds), so two workers never attempt the same row at once and
a worker that dies mid-attempt leaves a row another worker retries once the lease is over.
Models name their columns differently; a ``Track`` maps the roles to the column names.

The rule both senders follow: whatever goes wrong while loading, building or sending one row
is recorded as a failed attempt of that row (``record_failure``), and never stops the others.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils import timezone

from .. import conf

logger = logging.getLogger(__name__)

MAX_ERROR_LENGTH = 2000
RETRY = "retry"


@dataclass(frozen=True)
class Track:
    """Where one model keeps its delivery state, and what its states are called."""

    model: type[models.Model]
    label: str  # for log lines: "Low stock alert", "Webhook delivery"
    status: str  # column names ...
    done_at: str
    pending: str  # ... and status values
    done: str
    given_up: str
    max_attempts_setting: str
    attempts: str = "attempts"
    last_error: str = "last_error"
    next_attempt_at: str = "next_attempt_at"

    def max_attempts(self) -> int:
        return int(conf.get(self.max_attempts_setting))

    def due(self, now: datetime) -> Q:
        return Q(**{f"{self.next_attempt_at}__isnull": True}) | Q(
            **{f"{self.next_attempt_at}__lte": now}
        )

    def pending_rows(self, now: datetime | None = None) -> models.QuerySet:
        """Pending rows; only those due at ``now`` if given."""
        rows = self.model._default_manager.filter(**{self.status: self.pending})
        return rows.filter(self.due(now)) if now is not None else rows


def backoff(attempts: int) -> timedelta:
    """Delay after the ``attempts``-th failure: BASE * 2**(attempts-1), at most MAX seconds."""
    base = conf.delivery_backoff_base()
    ceiling = conf.delivery_backoff_max()
    exponent = min(max(attempts - 1, 0), 64)  # 2**64 * base exceeds any sane ceiling
    return timedelta(seconds=min(base * 2**exponent, ceiling))


def lease() -> timedelta:
    return timedelta(seconds=conf.delivery_lease())


def describe(exc: BaseException) -> str:
    """The ``last_error`` text of an exception: its type and message, bounded."""
    return f"{type(exc).__name__}: {exc}"[:MAX_ERROR_LENGTH]


def claim(track: Track, pk: Any, *, now: datetime | None = None) -> int | None:
    """Claim a pending, due row for one attempt; return the attempt's number, or None.

    Compare-and-set on the attempt count read just before: of two workers that read the
    same count, one UPDATE matches and the other finds the row already taken.
    """
    now = now or timezone.now()
    rows = track.model._default_manager.filter(pk=pk, **{track.status: track.pending})
    attempts = rows.filter(track.due(now)).values_list(track.attempts, flat=True).first()
    if attempts is None:
        return None
    claimed = (
        rows.filter(track.due(now))
        .filter(**{track.attempts: attempts})
        .update(**{track.next_attempt_at: now + lease(), track.attempts: attempts + 1})
    )
    return attempts + 1 if claimed else None


def record_success(track: Track, pk: Any, **columns: Any) -> str:
    """The claimed row was delivered; ``columns`` are extra values to store with it."""
    track.model._default_manager.filter(pk=pk).update(
        **{
            track.status: track.done,
            track.done_at: timezone.now(),
            track.last_error: "",
            track.next_attempt_at: None,
        },
        **columns,
    )
    return track.done


def record_failure(
    track: Track,
    pk: Any,
    attempt: int,
    error: str | BaseException,
    *,
    permanent: bool = False,
    not_before: float = 0.0,
    **columns: Any,
) -> tuple[str, datetime | None]:
    """Attempt number ``attempt`` of the claimed row failed: give up or schedule a retry.

    Gives up on a ``permanent`` error or after the track's maximum number of attempts;
    otherwise the retry is due after the backoff, or after ``not_before`` seconds if the
    receiver asked for longer (a ``Retry-After``), capped at the backoff ceiling
    (``STOCKPIPE_DELIVERY_BACKOFF_MAX``) so no answer parks a row longer than the longest
    backoff. Returns the outcome (the given-up status value, or ``"retry"``) and, for a
    retry, when it is due.
    """
    text = describe(error) if isinstance(error, BaseException) else error[:MAX_ERROR_LENGTH]
    rows = track.model._default_manager.filter(pk=pk)
    if permanent or attempt >= track.max_attempts():
        rows.update(
            **{track.status: track.given_up, track.last_error: text, track.next_attempt_at: None},
            **columns,
        )
        logger.error("%s %s gave up after %s attempt(s): %s", track.label, pk, attempt, text)
        return track.given_up, None
    ceiling = conf.delivery_backoff_max()
    delay = max(backoff(attempt), timedelta(seconds=min(max(not_before, 0.0), ceiling)))
    retry_at = timezone.now() + delay
    rows.update(**{track.last_error: text, track.next_attempt_at: retry_at}, **columns)
    logger.warning(
        "%s %s attempt %s failed (%s); retry at %s", track.label, pk, attempt, text, retry_at
    )
    return RETRY, retry_at


def park(track: Track, pk: Any, error: str, **columns: Any) -> None:
    """The claimed row's attempt failed because its destination is gone (switched off, not
    the row's fault): keep it pending and due at once, for when the destination is back.

    The attempt stays counted. The caller keeps parked rows from being claimed meanwhile
    (webhooks: an inactive subscription's rows are neither swept nor sent).
    """
    track.model._default_manager.filter(pk=pk).update(
        **{track.last_error: error[:MAX_ERROR_LENGTH], track.next_attempt_at: None}, **columns
    )
    logger.warning("%s %s parked: %s", track.label, pk, error)


def requeue(track: Track, rows: models.QuerySet) -> int:
    """Make rows pending again with a fresh attempt count (by hand: retry, redeliver)."""
    return rows.update(
        **{track.status: track.pending, track.attempts: 0, track.next_attempt_at: None}
    )
