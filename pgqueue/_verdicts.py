"""What a handler can say besides returning or failing: cancel itself, or skip.

Both are raised from the handler, like :class:`~pgqueue.ErrorWithRetry`, and end the job
at once whatever its retry filter says:

- ``raise Cancel("the account was closed")``: the run and the job end as ``cancelled``,
  with the reason as the run's note; never retried.
- ``raise Skip("nothing to send today")``: the run and the job end as ``succeeded``, with
  ``skipped: <note>`` as the run's note and no result.

They are exceptions so that code deep inside a handler can decide; they subclass
:class:`~pgqueue.PgQueueError`, so a broad ``except Exception`` in the handler catches them
too (re-raise them).
"""

from __future__ import annotations

from ._errors import PgQueueError

__all__ = ["Cancel", "Skip", "Verdict"]


class Verdict(PgQueueError):  # noqa: N818 - a handler's decision, not an error
    """Base of the handler verdicts: the reason or note is the exception's message."""

    def __init__(self, note: str = "") -> None:
        super().__init__(note)
        self.note = note


class Cancel(Verdict):
    """End the job as cancelled, with ``reason``; it is not retried."""


class Skip(Verdict):
    """End the job as succeeded without a result, with ``note``."""
