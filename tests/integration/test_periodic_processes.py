"""Four OS processes with the same periodic declarations, on a clock the test drives.

Each process (``_periodic_proc.py``) runs a round whenever the test sends it the "true"
time, shifted by its own clock skew (within ±1 s of the truth: the processes' clocks
differ by at most 2 s, under the 5 s grace of the tightest declaration minus the 2.5 s
between rounds, as the README's bound asks). The database then holds exactly one job per
tick of each declaration, none missing:

1. six minutes with three or four processes up (each one down for 30 s in turn);
2. every process down for two minutes and 40 s, then four new processes (a restart, with
   other skews): the ``skip`` declarations have no job for the ticks missed meanwhile, the
   ``missed="latest"`` one exactly one, for the latest missed tick, and nothing enqueued
   before the gap is enqueued again;
3. four more minutes, rolling again.

The clock crosses 02:00 in Paris on 2031-03-30, where clocks go forward to 03:00.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import asyncpg
import pytest
from anyio.abc import Process
from anyio.streams.buffered import BufferedByteReceiveStream

from pgqueue import Scheduler
from tests._support import ROOT_DIR, WAIT_S

pytestmark = pytest.mark.pg

SCRIPT = str(Path(__file__).with_name("_periodic_proc.py"))
START = dt.datetime(2031, 3, 30, 0, 55, 0, 500_000, tzinfo=dt.UTC)  # 01:55 CET; 01:00 UTC is 03:00 CEST
STEP = dt.timedelta(seconds=2.5)
FIRST_SKEWS = (-0.9, -0.3, 0.4, 1.0)
RESTART_SKEWS = (0.8, -1.0, 0.1, -0.4)


@dataclasses.dataclass
class Proc:
    process: Process
    lines: BufferedByteReceiveStream
    skew: float
    enqueued: int = 0

    async def line(self) -> str:
        with anyio.fail_after(WAIT_S):
            return (await self.lines.receive_until(b"\n", 1024)).decode()


@asynccontextmanager
async def processes(dsn: str, schema: str, skews: Sequence[float]) -> AsyncIterator[list[Proc]]:
    """Start one process per skew; on exit, end them and wait for their exit status."""
    procs: list[Proc] = []
    try:
        for skew in skews:
            process = await anyio.open_process(
                [sys.executable, SCRIPT, dsn, schema, str(skew)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=None,
                cwd=ROOT_DIR,
            )
            assert process.stdout is not None
            procs.append(Proc(process, BufferedByteReceiveStream(process.stdout), skew))
        for p in procs:
            assert await p.line() == "ready"
        yield procs
        for p in procs:
            assert p.process.stdin is not None
            await p.process.stdin.send(b"quit\n")
        with anyio.fail_after(WAIT_S):
            codes = [await p.process.wait() for p in procs]
        assert codes == [0] * len(procs)
    finally:
        for p in procs:
            if p.process.returncode is None:
                p.process.kill()
                await p.process.wait()


async def drive(procs: list[Proc], steps: range) -> None:
    """One round per step in every process that is up: process i is down for 12 steps in turn."""
    for k in steps:
        now = (START + k * STEP).isoformat().encode() + b"\n"
        up = [p for i, p in enumerate(procs) if (k // 12) % len(procs) != i]
        for p in up:
            assert p.process.stdin is not None
            await p.process.stdin.send(now)
        for p in up:
            reply = await p.line()
            assert reply.startswith("ok "), reply
            p.enqueued += int(reply[3:])


def grid(first: dt.datetime, last: dt.datetime, every: dt.timedelta) -> list[dt.datetime]:
    out = []
    while first <= last:
        out.append(first)
        first += every
    return out


def at(hour: int, minute: int, second: int) -> dt.datetime:
    return dt.datetime(2031, 3, 30, hour, minute, second, tzinfo=dt.UTC)


@pytest.fixture
async def schema(scheduler: Scheduler) -> str:
    """The test's migrated schema (the processes connect to it on their own)."""
    return scheduler.schema


async def test_four_processes_enqueue_exactly_one_job_per_tick(
    dsn: str, schema: str, db: asyncpg.Connection
) -> None:
    # Phase 1: steps 0..143, 00:55:00.5 .. 01:00:58.0 (true time).
    async with processes(dsn, schema, FIRST_SKEWS) as first:
        await drive(first, range(144))
    # Phase 2: no round from step 144 to 207 (01:01:00.5 .. 01:03:38.0); phase 3 resumes at
    # 01:03:40.5 with new processes, whose clocks read 01:03:39.5 .. 01:03:41.3.
    async with processes(dsn, schema, RESTART_SKEWS) as restarted:
        await drive(restarted, range(208, 304))  # .. 01:07:38.0, clocks 01:07:37.0 .. 01:07:38.8
    enqueued = sum(p.enqueued for p in first + restarted)

    rows = await db.fetch(
        f'SELECT type, run_at, count(*) AS n FROM "{schema}".jobs GROUP BY type, run_at ORDER BY type, run_at'
    )
    assert [r for r in rows if r["n"] != 1] == []  # no tick enqueued twice
    got = {
        name: [r["run_at"] for r in rows if r["type"] == name] for name in ("every10", "quarter", "minutely")
    }
    ten, fifteen, minute = dt.timedelta(seconds=10), dt.timedelta(seconds=15), dt.timedelta(minutes=1)
    # skip, grace 5 s: 01:03:30 was 9.5 s old or more when the rounds resumed.
    assert got["every10"] == grid(at(0, 55, 0), at(1, 0, 50), ten) + grid(at(1, 3, 40), at(1, 7, 30), ten)
    # skip, grace 7.5 s: 01:03:30 was 9.5 s old or more.
    assert got["quarter"] == grid(at(0, 55, 0), at(1, 0, 45), fifteen) + grid(
        at(1, 3, 45), at(1, 7, 30), fifteen
    )
    # latest, grace 30 s: 01:03:00 was 39.5 s old or more; it runs once, 01:01 and 01:02 do not.
    assert got["minutely"] == grid(at(0, 55, 0), at(1, 0, 0), minute) + grid(at(1, 3, 0), at(1, 7, 0), minute)
    assert enqueued == len(rows)
    assert len(rows) > 100  # many ticks, all through the processes' rounds
    listed = await db.fetch(f'SELECT name, last_tick FROM "{schema}".periodic ORDER BY name')
    assert [(r["name"], r["last_tick"]) for r in listed] == [
        ("every10", at(1, 7, 30)),
        ("minutely", at(1, 7, 0)),
        ("quarter", at(1, 7, 30)),
    ]
