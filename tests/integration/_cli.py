"""Running the ``pgqueue`` command in tests: in this process through ``main()``, or in a
pseudo-terminal as a person runs it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from pgqueue.cli import main
from tests._support import ROOT_DIR, drop_schema


def run_main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """``pgqueue <args>`` in this process: (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as done:
        main(list(args))
    out, err = capsys.readouterr()
    code = done.value.code
    return (code if isinstance(code, int) else 0), out, err


@pytest.fixture
def main_env(
    dsn: str, schema_name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Iterator[None]:
    """The test's server and schema in the environment the command reads, migrated first."""
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    monkeypatch.setenv("PGQUEUE_SCHEMA", schema_name)
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("PGQUEUE_APP", raising=False)
    assert run_main(capsys, "migrate")[0] == 0
    yield
    asyncio.run(drop_schema(dsn, schema_name))


def in_a_terminal(args: list[str], env: dict[str, str]) -> tuple[int, str]:
    """``pgqueue <args>`` with stdout and stderr on a pseudo-terminal: (exit code, screen)."""
    import pty

    env = {**env, "TERM": "xterm-256color", "COLUMNS": "120"}
    env.pop("NO_COLOR", None)
    master, slave = pty.openpty()
    with subprocess.Popen(
        [sys.executable, "-m", "pgqueue", *args], stdout=slave, stderr=slave, env=env, cwd=ROOT_DIR
    ) as proc:
        os.close(slave)
        chunks: list[bytes] = []
        while True:
            try:
                data = os.read(master, 4096)
            except OSError:  # the terminal's other side closed: the command exited
                break
            if not data:
                break
            chunks.append(data)
        code = proc.wait(timeout=60)
    os.close(master)
    return code, b"".join(chunks).decode()
