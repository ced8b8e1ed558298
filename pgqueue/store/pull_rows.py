"""What a pull consumer exchanges with a store: claimed leases as plain, backend-neutral rows."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from pgqueue._models import Row

__all__ = ["CLAIM_CLOCK", "CLAIM_LIMITED", "HOLDER", "LEASED_AT", "LEASE_UNTIL", "LeaseClaim"]

# A leased job's row is the claim's row (pgqueue._models ROW_*, tenant at 15) followed by
# these two columns, epoch seconds on the database's clock (NULL when not leased), then
# the job's holder (worker_id), the database's clock, and in a claim's rows the limited
# queues the claim named (it took nothing then).
LEASED_AT, LEASE_UNTIL, HOLDER, CLAIM_CLOCK, CLAIM_LIMITED = 16, 17, 18, 19, 20


@dataclasses.dataclass(frozen=True, slots=True)
class LeaseClaim:
    """One claim of a pull consumer."""

    registered: bool
    """False when the consumer's row is gone (forgotten or removed): nothing was claimed,
    and the consumer must register again."""
    server_time: float
    """The database's clock during the claim (epoch seconds)."""
    rows: Sequence[Row]
    """The claimed jobs, in claim order (priority, run_at, id)."""
    limited: Sequence[str] = ()
    """Queues named by the claim that have a global limit: it took nothing then."""
