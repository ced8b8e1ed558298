"""How the stages are wired for the loop's sake: one turn shared by claims and flushes, bounded flushes."""

from __future__ import annotations

from typing import cast

import anyio
import pytest

from pgqueue._clock import SystemClock
from pgqueue._config import WorkerConfig
from pgqueue._models import ShouldLogRun
from pgqueue._registry import Registry
from pgqueue._signals import WorkerSignals
from pgqueue.store import FinalizeResult, FlushBatch, WorkerStore
from pgqueue.store.memory import MemoryStore
from pgqueue.worker import flusher as flusher_module
from pgqueue.worker import turns as turns_module
from pgqueue.worker.flusher import BUILD_CHUNK, Flusher
from pgqueue.worker.lease import Identity
from pgqueue.worker.result_buffer import ResultBuffer
from pgqueue.worker.results import RunResult, RunStats
from pgqueue.worker.stages import Stages, build
from pgqueue.worker.turns import Turns
from tests.unit.test_flush_batch import make_job, success


def _stages(config: WorkerConfig) -> Stages:
    return build(
        store=MemoryStore(),
        config=config,
        registry=Registry(),
        clock=SystemClock(),
        identity=Identity(config.concurrency),
        signals=WorkerSignals(),
        stats=RunStats(),
        cancel_local=lambda job_id: None,
        suspend_local=lambda job_id: None,
        report=lambda exc, action: None,
        held=(None, None),
    )


@pytest.mark.parametrize("take_turns", [True, False])
def test_the_claim_and_the_flush_share_one_turn(take_turns: bool) -> None:
    st = _stages(WorkerConfig.build(["q"], take_turns=take_turns))
    turns = st.fetcher._turns
    assert turns is st.flusher._turns
    assert turns.enabled is take_turns


def test_a_flush_writes_at_most_flush_max_results() -> None:
    config = WorkerConfig.build(["q"], flush_max=70, buffer_max=700)
    st = _stages(config)
    assert st.flusher._batch_max == 70


class _RecordingStore:
    """What the flusher asks of a store: one finalize, answered at once, and whether it errs."""

    def __init__(self) -> None:
        self.batches: list[int] = []
        self.last = FlushBatch()

    async def job_finalize_many(
        self, worker_id: int, batch: FlushBatch, held: object = None, *, clock_offset: float = 0.0
    ) -> FinalizeResult:
        self.batches.append(len(batch.end_ids))
        self.last = batch
        return FinalizeResult(frozenset(batch.end_ids), {}, len(batch.end_ids), None)

    def is_unavailable(self, exc: BaseException) -> bool:
        return False

    def is_conflict(self, exc: BaseException) -> bool:
        return False


def _flusher(
    store: _RecordingStore, results: ResultBuffer[RunResult], batch_max: int, turns: Turns
) -> Flusher:
    return Flusher(
        store=cast("WorkerStore", store),
        results=results,
        identity=Identity(),
        should_log_run=None,
        on_put_back=lambda delay: None,
        batch_max=batch_max,
        turns=turns,
    )


@pytest.mark.anyio
async def test_a_large_flush_is_built_a_chunk_per_loop_step(monkeypatch: pytest.MonkeyPatch) -> None:
    """Other tasks run between the chunks of a flush's build: it never holds the loop whole."""
    n = 2 * BUILD_CHUNK + 1
    results: ResultBuffer[RunResult] = ResultBuffer(flush_max=n, flush_age=1.0, high_water=n)
    for i in range(1, n + 1):
        results.put(success(make_job(i, 1)))
    store = _RecordingStore()
    flusher = _flusher(store, results, n, Turns())
    other_steps = 0
    seen: list[int] = []  # the other task's step count as each chunk is added
    real = flusher_module.add_results

    def recording(batch: FlushBatch, items: list[RunResult], should_log_run: ShouldLogRun | None) -> None:
        seen.append(other_steps)
        real(batch, items, should_log_run)

    async def other() -> None:
        nonlocal other_steps
        while True:
            await anyio.lowlevel.checkpoint()
            other_steps += 1

    monkeypatch.setattr(flusher_module, "add_results", recording)
    async with anyio.create_task_group() as tg:
        tg.start_soon(other)
        assert await flusher.flush_once()
        tg.cancel_scope.cancel()
    assert len(seen) == 3
    assert seen[0] < seen[1] < seen[2]
    assert store.last.end_ids == list(range(1, n + 1))  # every result once, in order


async def _flush_while_a_claim_holds_the_turn(*, urgent: bool, blocked: bool) -> tuple[list[str], Turns]:
    """Flush once while another statement holds the turn; the order in which they end."""
    turns, order = Turns(), list[str]()
    results: ResultBuffer[RunResult] = ResultBuffer(
        flush_max=2, flush_age=1.0, high_water=2 if blocked else 10
    )
    for i in range(1, 3):
        results.put(success(make_job(i, 1)))
    store = _RecordingStore()
    flusher = _flusher(store, results, 2, turns)
    entered, leave = anyio.Event(), anyio.Event()

    async def claim() -> None:
        async with turns.turn(urgent=False):
            entered.set()
            await leave.wait()
            order.append("claim")

    async def flush() -> None:
        assert await flusher.flush_once(urgent=urgent)
        order.append("flush")

    async with anyio.create_task_group() as tg:
        tg.start_soon(claim)
        await entered.wait()
        tg.start_soon(flush)
        await anyio.wait_all_tasks_blocked()
        leave.set()
    assert store.batches == [2]
    return order, turns


@pytest.mark.anyio
@pytest.mark.parametrize(("urgent", "blocked"), [(True, False), (False, True)])
async def test_a_flush_goes_at_once_on_shutdown_or_when_runners_are_held_back(
    urgent: bool, blocked: bool
) -> None:
    order, _ = await _flush_while_a_claim_holds_the_turn(urgent=urgent, blocked=blocked)
    assert order == ["flush", "claim"]


@pytest.mark.anyio
async def test_a_flush_otherwise_waits_for_the_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(turns_module, "MAX_WAIT_S", 60.0)  # the bound is not what this tests
    order, turns = await _flush_while_a_claim_holds_the_turn(urgent=False, blocked=False)
    assert order == ["claim", "flush"]
    assert turns.waited == 1
