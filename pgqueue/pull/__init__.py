"""Pull mode: leasing jobs to code that is not a Worker (``scheduler.dequeue()``, the HTTP API)."""

from __future__ import annotations

from .consumer import Consumer
from .lease import Lease, lease_token, parse_token

__all__ = ["Consumer", "Lease", "lease_token", "parse_token"]
