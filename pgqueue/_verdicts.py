"""What a handler can say besides returning or failing: cancel itself, skip, or snooze.

They are raised from the handler, like :class:`~pgqueue.ErrorWithRetry`, and decide the
run whatever its retry filter says:

- ``raise Cancel("the account was closed")``: the run and the job end as ``cancelled``,
  with the reason as the run's note; never retried.
- ``raise Skip("nothing to send today")``: the run and the job end as ``succeeded``, with
  ``skipped: <note>`` as the run's note and no result.
- ``raise Snooze(60)`` (seconds or a timedelta): the run ends ``snoozed`` and the job runs
  again that much later (by the database's clock), counted neither as an error nor
  against ``max_attempts``.
- ``raise Suspended()`` (what ``await job.checkpoint(data)`` raises once ``suspend()`` was
  asked for): the run ends ``suspended`` and the job stays suspended, with its checkpoint,
  until ``resume()``; not counted either.

They are exceptions so that code deep inside a handler can decide; they subclass
:class:`~pgqueue.PgQueueError`, so a broad ``except Exception`` in the handler catches them
too (re-raise them).
"""

from __future__ import annotations

import datetime as dt

from ._errors import PgQueueError, check_delay

__all__ = ["Cancel", "Skip", "Snooze", "Suspended", "Verdict"]


class Verdict(PgQueueError):  # noqa: N818 - a handler's decision, not an error
    """Base of the handler verdicts: the reason or note is the exception's message."""

    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note


class Cancel(Verdict):
    """End the job as cancelled, with ``reason``; it is not retried."""


class Skip(Verdict):
    """End the job as succeeded without a result, with ``note``."""


class Snooze(Verdict):
    """Run the job again after ``delay`` (seconds or a timedelta), without counting this run."""

    def __init__(self, delay: float | dt.timedelta) -> None:
        self.delay = check_delay(delay, "Snooze delay")
        super().__init__(f"snoozed for {self.delay:g} s")


class Suspended(Verdict):
    """Stop this run and leave the job suspended until ``resume()`` (see ``job.checkpoint``)."""
