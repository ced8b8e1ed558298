"""The notifications on a schema's channel, parsed (their format is in ``queries/listen.sql``).

Workers (``worker/listener.py``) and waiting ``dequeue()`` calls (``pull/wakeups.py``)
read the same payloads; one parser keeps them agreeing on what each shape means.
"""

from __future__ import annotations

import math
from typing import NamedTuple

__all__ = ["Payload", "parse_payload"]


class Payload(NamedTuple):
    """One notification, parsed: its kind, its queue or token, and the number it carries."""

    kind: str  # '' for a shape this version does not know
    name: str  # the queue (r, d, j) or the token or job id as text (p, c, s)
    at: float | None = None  # d: seconds until the job is due
    job: int | None = None  # j: the job's id


_UNKNOWN = Payload("", "")


def parse_payload(payload: str) -> Payload:
    """Split a payload into its parts; unknown or malformed shapes give kind ''."""
    kind, _, rest = payload.partition(":")
    if kind == "d":
        at, _, queue = rest.partition(":")
        try:
            when = float(at)
        except ValueError:
            return _UNKNOWN
        return Payload("d", queue, at=when) if math.isfinite(when) else _UNKNOWN
    if kind == "j":
        job, _, queue = rest.partition(":")
        return Payload("j", queue, job=int(job)) if job.isdigit() and job.isascii() else _UNKNOWN
    if kind in ("r", "p", "c", "s"):
        return Payload(kind, rest)
    return _UNKNOWN
