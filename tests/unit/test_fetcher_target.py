"""Fetcher claim sizing: the adaptive target (Little's law) and when there is room to claim."""

from __future__ import annotations

from typing import TYPE_CHECKING, cast

from pgqueue._clock import SystemClock
from pgqueue._config import WorkerConfig
from pgqueue._models import Job
from pgqueue.worker.fetcher import CLAIM_MAX, Fetcher
from pgqueue.worker.job_buffer import JobBuffer
from pgqueue.worker.lease import Identity
from pgqueue.worker.result_buffer import ResultBuffer
from pgqueue.worker.results import RunResult, RunStats

if TYPE_CHECKING:
    from pgqueue.store.postgres import PostgresStore as Store

CONCURRENCY = 10
PREFETCH = 500


class FixedClock:
    """A clock that stands still: deadlines are checked exactly."""

    def time(self) -> float:
        return 1_000_000.0

    def monotonic(self) -> float:
        return 1000.0


def make_fetcher(
    *, high_water: int = 2000, clock: object | None = None, config: WorkerConfig | None = None
) -> tuple[Fetcher, RunStats, ResultBuffer[RunResult]]:
    stats = RunStats()
    results: ResultBuffer[RunResult] = ResultBuffer(flush_max=1, flush_age=1.0, high_water=high_water)
    fetcher = Fetcher(
        store=cast("Store", None),
        config=config or WorkerConfig(queues=("q",), concurrency=CONCURRENCY, prefetch=PREFETCH),
        identity=Identity(),
        jobs=JobBuffer[Job](),
        results=results,
        stats=stats,
        clock=clock or SystemClock(),  # type: ignore[arg-type]
    )
    return fetcher, stats, results


def finish(stats: RunStats, runs: int, busy_s: float) -> None:
    stats.finished += runs
    stats.busy_s += busy_s


def test_target_is_twice_concurrency_before_any_run_is_measured() -> None:
    fetcher, stats, _ = make_fetcher()
    assert fetcher._target() == 2 * CONCURRENCY  # one spare job per runner
    finish(stats, CONCURRENCY - 1, 0.0001)  # fewer runs than concurrency: not measured yet
    assert fetcher._target() == 2 * CONCURRENCY


def test_fast_jobs_get_the_full_prefetch() -> None:
    fetcher, stats, _ = make_fetcher()
    fetcher._rtt = 0.002
    finish(stats, 10, 1e-5)
    assert fetcher._target() == PREFETCH


def test_one_second_jobs_stay_near_concurrency() -> None:
    fetcher, stats, _ = make_fetcher()
    fetcher._rtt = 0.002
    finish(stats, 10, 10.0)
    target = fetcher._target()
    assert CONCURRENCY <= target <= CONCURRENCY + 1


def test_target_tracks_the_latest_measurement() -> None:
    fetcher, stats, _ = make_fetcher()
    fetcher._rtt = 0.002
    finish(stats, 10, 10.0)
    assert fetcher._target() <= CONCURRENCY + 1
    finish(stats, 10, 1e-5)  # the jobs got fast: the next window counts, not the total
    assert fetcher._target() == PREFETCH


def test_target_never_exceeds_prefetch_or_falls_below_concurrency() -> None:
    for busy in (0.0, 1e-9, 1e-3, 1.0, 1e6):
        fetcher, stats, _ = make_fetcher()
        finish(stats, 10, busy)
        assert CONCURRENCY <= fetcher._target() <= PREFETCH, busy


def test_want_is_zero_above_the_low_watermark_and_the_gap_at_or_below() -> None:
    """The low watermark: the runners' jobs plus half of the waiting jobs the target holds."""
    fetcher, stats, _ = make_fetcher()
    target = fetcher._target()
    assert target == 2 * CONCURRENCY
    for held in range(target + 3):
        stats.outstanding = held
        want = fetcher._want()
        if held > CONCURRENCY + CONCURRENCY // 2:
            assert want == 0, held
        else:
            assert want == target - held, held


def test_want_with_a_measured_large_target() -> None:
    fetcher, stats, _ = make_fetcher()
    fetcher._rtt = 0.002
    finish(stats, 10, 1e-5)
    low = CONCURRENCY + (PREFETCH - CONCURRENCY) // 2
    stats.outstanding = low
    assert fetcher._want() == PREFETCH - low
    stats.outstanding = low + 1
    assert fetcher._want() == 0


def test_slow_jobs_claim_as_soon_as_a_runner_is_free_and_nothing_waits() -> None:
    """A target of about concurrency: a runner finishing with nothing waiting claims at once."""
    fetcher, stats, _ = make_fetcher()
    fetcher._rtt = 0.002
    finish(stats, 10, 10.0)
    target = fetcher._target()
    stats.outstanding = CONCURRENCY  # every runner busy, nothing waiting
    assert fetcher._want() == target - CONCURRENCY
    stats.outstanding = CONCURRENCY - 1  # one runner free
    assert fetcher._want() == target - CONCURRENCY + 1


def test_short_jobs_at_a_high_concurrency_claim_while_round_trips_of_work_still_wait() -> None:
    """200 runners of 10 ms jobs, claims taking 5 ms: with the default prefetch, the claim
    goes out while the waiting jobs still last at least two of its round trips, so runners
    do not run dry while it is in flight."""
    concurrency, run_s, rtt_s = 200, 0.010, 0.005
    fetcher, stats, _ = make_fetcher(config=WorkerConfig.build(["q"], concurrency=concurrency))
    fetcher._rtt = rtt_s
    finish(stats, concurrency, concurrency * run_s)
    stats.outstanding = concurrency
    assert fetcher._want() > 0
    for held in range(concurrency, fetcher._target_now + 1):
        stats.outstanding = held
        if fetcher._want() > 0:
            claimed_at = held  # the highest count of held jobs at which a claim goes out
    waiting_s = (claimed_at - concurrency) * run_s / concurrency  # how long the waiting jobs last
    assert waiting_s >= 2 * rtt_s


def test_one_claim_brings_at_most_claim_max_rows_whatever_the_prefetch() -> None:
    """A large prefetch fills over several claims: each one's decoding stays a short step."""
    fetcher, stats, _ = make_fetcher(
        config=WorkerConfig(queues=("q",), concurrency=CONCURRENCY, prefetch=5 * CLAIM_MAX)
    )
    fetcher._rtt = 0.002
    finish(stats, 10, 1e-5)  # fast jobs: the target is the whole prefetch
    assert fetcher._target() == 5 * CLAIM_MAX
    for held in (0, CONCURRENCY, fetcher._low_water):
        stats.outstanding = held
        assert fetcher._want() == CLAIM_MAX, held


def test_want_is_zero_while_the_result_buffer_is_blocked() -> None:
    fetcher, stats, results = make_fetcher(high_water=2)
    stats.outstanding = 0
    assert fetcher._want() == 2 * CONCURRENCY
    results.restore([cast("RunResult", object()), cast("RunResult", object())])  # at high water
    assert results.blocked()
    assert fetcher._want() == 0
    results.take(1000)
    assert fetcher._want() == 2 * CONCURRENCY


def test_note_due_keeps_the_earliest_deadline_on_the_monotonic_clock() -> None:
    """Delays (seconds from the server's now) become monotonic deadlines; the earliest wins."""
    fetcher, _, _ = make_fetcher(clock=FixedClock())
    assert fetcher._next_due is None
    fetcher.note_due(200.0)
    assert fetcher._next_due == 1200.0
    fetcher.note_due(300.0)
    assert fetcher._next_due == 1200.0
    fetcher.note_due(100.0)
    assert fetcher._next_due == 1100.0
    fetcher.note_due(-5.0)  # already due by the server's clock: now, not in the past
    assert fetcher._next_due == 1000.0


def test_note_due_wakes_the_loop_only_for_an_earlier_time() -> None:
    fetcher, _, _ = make_fetcher()
    fetcher.note_due(200.0)
    assert fetcher._wake.is_set()
    fetcher._wake.clear()
    fetcher.note_due(300.0)
    assert not fetcher._wake.is_set()


def test_notify_ready_sets_the_pending_flag_and_wakes() -> None:
    fetcher, _, _ = make_fetcher()
    fetcher._pending = False
    fetcher._wake.clear()
    fetcher.notify_ready()
    assert fetcher._pending
    assert fetcher._wake.is_set()
