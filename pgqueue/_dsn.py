"""What a connection string says about where the server runs.

Only the question pgqueue asks of it: is the PostgreSQL server on this machine? A worker
whose database shares its cores takes turns between its claims and flushes
(``worker/turns.py``); it learns where the server is from the DSN, before connecting.
"""

from __future__ import annotations

import ipaddress
import os
import urllib.parse

__all__ = ["on_this_machine"]

_LOCAL_NAMES = frozenset({"localhost", "localhost.localdomain"})


def _local_host(host: str) -> bool:
    host = urllib.parse.unquote(host).strip().strip("[]")
    if not host or host.startswith("/") or host.lower() in _LOCAL_NAMES:
        return True  # a Unix-socket directory, or asyncpg's default (a local socket, else localhost)
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost: it may resolve anywhere


def on_this_machine(dsn: str) -> bool:
    """True when every host a ``postgresql://`` DSN names is a local socket or a loopback address.

    A DSN without a host means ``PGHOST``, else a local socket or localhost (as asyncpg and
    libpq read it). A host name other than ``localhost`` counts as remote, as does a DSN
    this cannot read: the answer only chooses a default, and remote is the safe one.
    """
    try:
        parts = urllib.parse.urlsplit(dsn)
    except ValueError:
        return False
    if parts.scheme not in ("postgresql", "postgres"):
        return False
    query_hosts = urllib.parse.parse_qs(parts.query).get("host", [])
    netloc_hosts = parts.netloc.rpartition("@")[2]
    if query_hosts:
        hosts = [h for q in query_hosts for h in q.split(",")]
    elif netloc_hosts:
        # host:port pairs, comma-separated; an IPv6 address is bracketed
        hosts = [h.rsplit(":", 1)[0] if not h.endswith("]") else h for h in netloc_hosts.split(",")]
    else:
        hosts = os.environ.get("PGHOST", "").split(",")
    return all(_local_host(h) for h in hosts)
