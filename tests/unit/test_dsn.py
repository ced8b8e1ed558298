"""Where a DSN puts the server: the default of ``take_turns`` rests on it."""

from __future__ import annotations

import pytest

from pgqueue._dsn import on_this_machine


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://postgres@127.0.0.1:5432/postgres",
        "postgresql://postgres@localhost/db",
        "postgres://u:p@[::1]:5433/db",
        "postgresql://u@127.0.0.2/db",
        "postgresql:///db?host=/run/postgresql",
        "postgresql://u@%2Ftmp%2Fpg/db",
        "postgresql://u@localhost:5432,127.0.0.1:5433/db",
    ],
)
def test_local_servers(dsn: str) -> None:
    assert on_this_machine(dsn)


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u@db.example.com/db",
        "postgresql://u@10.0.0.5:5432/db",
        "postgresql://u@[2001:db8::1]:5432/db",
        "postgresql://u@localhost,db.example.com/db",
        "postgresql:///db?host=db.internal",
        "mysql://u@localhost/db",
        "host=localhost dbname=x",
    ],
)
def test_remote_or_unreadable_servers(dsn: str) -> None:
    assert not on_this_machine(dsn)


def test_no_host_reads_pghost(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PGHOST", raising=False)
    assert on_this_machine("postgresql:///db")  # a local socket, else localhost
    monkeypatch.setenv("PGHOST", "db.example.com")
    assert not on_this_machine("postgresql:///db")
    monkeypatch.setenv("PGHOST", "/var/run/postgresql")
    assert on_this_machine("postgresql:///db")
