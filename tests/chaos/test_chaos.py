"""Chaos: worker processes SIGKILLed, connections terminated, the server restarted; nothing lost.

Each test runs on its own embedded PostgreSQL (see ``harness.py``), so it needs no test
server and never restarts the shared one. ``-s`` shows the summary line, for example
``chaos: jobs 10000 kills 4 conn_kills 10 restarts 1 dependents 503 lost 0 stuck 0 duplicate_runs 7``.

Deadlines only fail a hang; nothing here asserts a duration.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos import app
from tests.chaos.harness import ChaosConfig, ChaosResult, run_chaos

pytestmark = pytest.mark.chaos


def assert_nothing_lost(res: ChaosResult, cfg: ChaosConfig) -> None:
    logs = f"logs in {res.log_dir}"
    assert res.jobs == cfg.jobs, f"scheduled {res.jobs} of the {cfg.jobs} planned jobs ({logs})"
    assert res.kills >= cfg.kills, f"the fault plan did not run: {res.kills} kills ({logs})"
    assert res.conn_kills == cfg.conn_kills, f"only {res.conn_kills} connections terminated ({logs})"
    assert res.restarts == int(cfg.restart), f"{res.restarts} server restarts ({logs})"
    assert res.drained, f"jobs still in the hot table after the drain deadline: {res.stuck_jobs} ({logs})"
    assert res.stuck == 0, (
        f"{res.stuck} jobs left in `jobs`, e.g. (id, worker_id, attempt, type) {res.stuck_jobs}"
    )
    assert not res.without_final, (
        f"jobs without a final run row (id, type, attempts): {res.without_final} ({logs})"
    )
    assert not res.several_finals, f"jobs with several final run rows: {res.several_finals} ({logs})"
    assert res.dependents > 0, f"no dependents were scheduled ({logs})"
    assert res.leader_kills == cfg.leader_kills, f"{res.leader_kills} leader kills ({logs})"
    assert res.pull_kills == cfg.pull_kills, f"{res.pull_kills} pull consumer kills ({logs})"
    assert res.pulled > 0, f"no job went to the pull consumers ({logs})"
    assert res.ticks > 0, f"no periodic tick was enqueued ({logs})"
    assert not res.duplicate_ticks, f"ticks with several jobs (tick, job ids): {res.duplicate_ticks} ({logs})"
    assert 0 < res.capped_max <= app.CAPPED_LIMIT, (
        f"most capped jobs held at once: {res.capped_max}, limit {app.CAPPED_LIMIT} ({logs})"
    )
    assert not res.dependents_not_succeeded, (
        f"dependents that did not succeed (job_id, final outcome): {res.dependents_not_succeeded} ({logs})"
    )
    assert res.lost == 0, (
        f"lost {res.lost}: scheduled {res.scheduled}, final outcomes {res.outcomes} ({logs})"
    )
    assert not res.foreign_runs, f"run rows for job ids nobody scheduled: {res.foreign_runs}"
    assert not res.duplicate_run_rows, (
        f"(job_id, attempt) twice in job_runs (fencing failed): {res.duplicate_run_rows} ({logs})"
    )
    assert not res.attempt_gaps, f"attempts of a job are not 1..max: {res.attempt_gaps} ({logs})"
    assert not res.final_not_last, f"final run row is not the last attempt: {res.final_not_last} ({logs})"
    assert not res.exec_without_run, (
        f"executions (job_id, attempt, times) without a run row: {res.exec_without_run} ({logs})"
    )
    twice = [x for x in res.same_attempt_twice if not x[-1]]
    assert not twice, f"the same attempt executed twice (job_id, attempt, times, outcome): {twice} ({logs})"
    assert not res.success_without_exec, (
        f"runs recorded as succeeded that never executed: {res.success_without_exec} ({logs})"
    )
    assert not res.unjustified_reruns, (
        "jobs executed again after an attempt that should have been final "
        f"(job_id, attempt, its outcome, executed attempts): {res.unjustified_reruns} ({logs})"
    )
    assert not res.owned_jobs, f"jobs still owned by a worker at the end: {res.owned_jobs} ({logs})"
    assert not res.unreaped_workers, (
        f"rows of killed workers never reaped (id, pid, heartbeat): {res.unreaped_workers} ({logs})"
    )
    assert not res.workers_left, f"worker rows left after every worker stopped: {res.workers_left} ({logs})"
    assert not res.silent_workers, (
        "workers that no longer ran jobs after the faults (name, pid, probe job): "
        f"{res.silent_workers} ({logs})"
    )
    assert not res.unexpected_exits, (
        "worker processes that exited on their own (name, pid, code, last error): "
        f"{res.unexpected_exits} ({logs})"
    )
    assert not res.bad_exits, f"workers that did not stop cleanly on SIGTERM: {res.bad_exits} ({logs})"


async def test_chaos_bounded(tmp_path: Path) -> None:
    """CI's version: 10,000 jobs, 3 workers, a few kills (one of the leader), conn kills, a restart."""
    cfg = ChaosConfig(jobs=10_000, workers=3, kills=4, conn_kills=10, drain_deadline_s=150.0)
    res = await run_chaos(cfg, tmp_path)
    print(res.summary())  # noqa: T201 - the suite's one summary line
    assert_nothing_lost(res, cfg)


@pytest.mark.slow
async def test_chaos_full(tmp_path: Path) -> None:
    """`make chaos`: 100,000 jobs, more kills (4 of the leader, 4 of pull consumers) and
    connection kills, one restart."""
    cfg = ChaosConfig(
        jobs=100_000,
        workers=3,
        kills=12,
        leader_kills=4,
        pull_kills=4,
        conn_kills=30,
        batches=10,
        upfront=0.2,
        fault_interval=(0.5, 1.5),
        drain_deadline_s=600.0,
    )
    res = await run_chaos(cfg, tmp_path)
    print(res.summary())  # noqa: T201 - the suite's one summary line
    assert_nothing_lost(res, cfg)
