"""The buffers between stages: flush thresholds, high/low-water blocking, JobBuffer wake-ups.

Waits are observed with ``anyio.wait_all_tasks_blocked()`` (every other task is parked) and
guarded by ``anyio.fail_after`` against hangs; nothing asserts how long anything took.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import TaskGroup

from pgqueue.worker.job_buffer import JobBuffer
from pgqueue.worker.result_buffer import ResultBuffer

HANG_GUARD_S = 5.0


async def put(buf: ResultBuffer[int], item: int) -> None:
    """The runners' protocol: put, and wait for the flusher when put says so."""
    if buf.put(item):
        await buf.wait_drained()


class FakeMonotonic:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def result_buffer(
    *, flush_max: int = 3, flush_age: float = 3600.0, high_water: int = 6, clock: FakeMonotonic | None = None
) -> ResultBuffer[int]:
    return ResultBuffer(
        flush_max=flush_max, flush_age=flush_age, high_water=high_water, monotonic=clock or FakeMonotonic()
    )


class Flag:
    """Records that a coroutine ran to completion."""

    def __init__(self) -> None:
        self.done = False


@asynccontextmanager
async def started(fn: Callable[[], Awaitable[object]]) -> AsyncIterator[tuple[Flag, TaskGroup]]:
    """Run ``fn`` in a task until everything blocks; yield its Flag (set once ``fn`` returned)."""
    flag = Flag()

    async def run() -> None:
        await fn()
        flag.done = True

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(run)
            await anyio.wait_all_tasks_blocked()
            yield flag, tg


# -- ResultBuffer: when a flush is due ---------------------------------------------------


async def test_put_below_flush_max_does_not_signal_a_batch_before_flush_age() -> None:
    buf = result_buffer(flush_max=3)
    await put(buf, 1)
    await put(buf, 2)
    assert len(buf) == 2
    async with started(buf.wait_batch) as (flag, _tg):
        assert not flag.done  # two items, flush_max 3, oldest is young: no batch yet
        await put(buf, 3)  # reaching flush_max wakes the flusher
    assert flag.done


async def test_wait_batch_returns_at_once_when_flush_max_items_are_buffered() -> None:
    buf = result_buffer(flush_max=3)
    for i in range(3):
        await put(buf, i)
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(1000) == [0, 1, 2]


async def test_wait_batch_returns_once_the_oldest_item_ages_fake_clock() -> None:
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=0.5, clock=clock)
    await put(buf, 1)
    clock.now += 0.25
    await put(buf, 2)  # a younger item does not reset the age
    clock.now += 0.25  # the oldest is now exactly flush_age old
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(1000) == [1, 2]


async def test_wait_batch_returns_once_the_oldest_item_ages_real_clock() -> None:
    buf: ResultBuffer[int] = ResultBuffer(flush_max=100, flush_age=0.01, high_water=200)
    await put(buf, 1)
    with anyio.fail_after(HANG_GUARD_S):  # a hang guard, not a timing assertion
        await buf.wait_batch()
    assert len(buf) == 1


async def test_wait_batch_waits_while_empty_and_wakes_on_put() -> None:
    buf = result_buffer(flush_max=1)
    async with started(buf.wait_batch) as (flag, _tg):
        assert not flag.done
        await put(buf, 1)
    assert flag.done


async def test_age_is_measured_from_the_first_item_after_a_take() -> None:
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=10.0, clock=clock)
    await put(buf, 1)
    clock.now += 100
    assert buf.take(1000) == [1]
    await put(buf, 2)  # arrives now: its age starts now, not at the first put
    async with started(buf.wait_batch) as (flag, tg):
        assert not flag.done
        tg.cancel_scope.cancel()


async def test_idle_makes_a_young_batch_due_at_once() -> None:
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=10.0, clock=clock)
    clock.now += 10.0  # the buffer's creation counts as a short flush: one flush_age has passed
    await put(buf, 1)
    async with started(buf.wait_batch) as (flag, _tg):
        assert not flag.done  # one young result and the worker still busy: wait for its age
        buf.idle()  # the worker holds no job now
    assert flag.done
    assert buf.take(1000) == [1]


async def idle_flushed_once() -> tuple[FakeMonotonic, ResultBuffer[int]]:
    """A buffer (flush_age 10 s) that has just made its first idle flush, of the result 1.

    It is made a flush_age after the buffer's creation, so it goes out at once.
    """
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=10.0, clock=clock)
    clock.now += 10.0
    await put(buf, 1)
    buf.idle()
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(1000) == [1]
    return clock, buf


async def test_idle_flushes_that_are_not_full_go_out_once_per_flush_age() -> None:
    clock, buf = await idle_flushed_once()
    clock.now += 4.0
    await put(buf, 2)
    buf.idle()  # idle again 4 s after the last short flush: not before 10 s after it
    async with started(buf.wait_batch) as (flag, tg):
        assert not flag.done
        tg.cancel_scope.cancel()
    clock.now += 6.0  # 10 s after the last short flush (6 s before the result's own age)
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(1000) == [2]


async def test_an_idle_flush_that_waited_for_its_turn_counts_as_one() -> None:
    clock, buf = await idle_flushed_once()
    clock.now += 9.99
    await put(buf, 2)
    buf.idle()  # its turn is 10 s after the last one: it waits out the rest, then goes
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(1000) == [2]
    clock.now += 0.02  # 10 s after the first idle flush, not after the second
    await put(buf, 3)
    buf.idle()
    async with started(buf.wait_batch) as (flag, tg):
        assert not flag.done
        tg.cancel_scope.cancel()


async def test_idle_with_nothing_buffered_does_not_send_the_next_result_out_alone() -> None:
    """Idle on an empty buffer is ignored: the next results wait for their age or a real idle."""
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=10.0, clock=clock)
    clock.now += 10.0
    buf.idle()  # a search found nothing while nothing was buffered
    await put(buf, 1)  # the first result of the next burst, the worker busy with the rest
    async with started(buf.wait_batch) as (flag, tg):
        assert not flag.done
        tg.cancel_scope.cancel()


async def test_idle_does_not_flush_within_flush_age_of_the_start() -> None:
    """A flush_age out of reach keeps results buffered while the worker idles (the start counts)."""
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=3600.0, clock=clock)
    await put(buf, 1)
    buf.idle()
    async with started(buf.wait_batch) as (flag, tg):
        assert not flag.done
        tg.cancel_scope.cancel()


async def test_full_flushes_do_not_hold_back_an_idle_flush() -> None:
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=2, flush_age=10.0, clock=clock)
    clock.now += 10.0
    await put(buf, 1)
    await put(buf, 2)
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()  # full
    assert buf.take(2) == [1, 2]
    await put(buf, 3)
    buf.idle()  # the end of a burst: its last results go out now, not after flush_age
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(2) == [3]


async def test_an_age_flush_does_not_hold_back_an_idle_flush() -> None:
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=10.0, clock=clock)
    await put(buf, 1)
    clock.now += 10.0
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()  # by age
    assert buf.take(1000) == [1]
    clock.now += 1.0
    await put(buf, 2)
    buf.idle()  # the last flush for idleness was the start, 11 s ago: at once
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()
    assert buf.take(1000) == [2]


# -- ResultBuffer: backpressure with hysteresis ------------------------------------------


def test_low_water_is_half_of_high_water() -> None:
    assert result_buffer(high_water=10).low_water == 5
    assert result_buffer(flush_max=1, high_water=1).low_water == 1


async def test_put_blocks_at_high_water_and_resumes_after_take() -> None:
    buf = result_buffer(flush_max=2, high_water=4)
    for i in range(3):
        await put(buf, i)  # below high water: returns at once
    assert not buf.blocked()
    # The fourth item reaches high water: this put waits.
    async with started(lambda: put(buf, 3)) as (flag, _tg):
        assert not flag.done
        assert buf.blocked()
        assert len(buf) == 4  # the item is buffered; only the runner waits
        assert buf.take(1000) == [0, 1, 2, 3]  # drained below low water
        assert not buf.blocked()
    assert flag.done


async def test_every_put_waits_while_blocked() -> None:
    buf = result_buffer(flush_max=1, high_water=2)
    finished: list[int] = []

    async def runner(i: int) -> None:
        await put(buf, i)
        finished.append(i)

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            await put(buf, 0)
            tg.start_soon(runner, 1)
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(runner, 2)  # arrives while blocked: waits too
            await anyio.wait_all_tasks_blocked()
            assert finished == []
            assert buf.blocked()
            assert buf.take(1000) == [0, 1, 2]
    assert sorted(finished) == [1, 2]
    assert not buf.blocked()


async def test_take_returns_everything_and_empties() -> None:
    buf = result_buffer()
    await put(buf, 1)
    await put(buf, 2)
    assert buf.take(1000) == [1, 2]
    assert len(buf) == 0
    assert buf.take(1000) == []


async def test_restore_puts_items_back_in_front_in_order() -> None:
    buf = result_buffer(flush_max=100, high_water=100)
    await put(buf, 1)
    await put(buf, 2)
    batch = buf.take(1000)
    await put(buf, 3)  # arrived while the failed flush was in flight
    buf.restore(batch)
    assert buf.take(1000) == [1, 2, 3]


async def test_restore_makes_the_batch_due_at_once() -> None:
    clock = FakeMonotonic()
    buf = result_buffer(flush_max=100, flush_age=60.0, high_water=100, clock=clock)
    await put(buf, 1)
    batch = buf.take(1000)
    buf.restore(batch)
    with anyio.fail_after(HANG_GUARD_S):
        await buf.wait_batch()  # no waiting for flush_age again
    assert buf.take(1000) == [1]


def test_restore_of_nothing_is_a_no_op() -> None:
    buf = result_buffer()
    buf.restore([])
    assert len(buf) == 0
    assert not buf.blocked()


def test_restore_above_high_water_blocks_runners_until_take() -> None:
    buf = result_buffer(flush_max=2, high_water=4)
    buf.restore([1, 2, 3, 4])
    assert buf.blocked()
    assert buf.take(1000) == [1, 2, 3, 4]
    assert not buf.blocked()


# -- JobBuffer ---------------------------------------------------------------------------


async def test_pop_waits_while_empty_and_push_many_wakes_it() -> None:
    buf: JobBuffer[str] = JobBuffer()
    got: list[str | None] = []

    async def runner() -> None:
        got.append(await buf.pop())

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner)
            await anyio.wait_all_tasks_blocked()
            assert got == []
            buf.push_many([])  # an empty batch wakes nobody
            await anyio.wait_all_tasks_blocked()
            assert got == []
            buf.push_many(["a", "b"])
    assert got == ["a"]
    assert len(buf) == 1


async def test_pop_returns_in_claim_order() -> None:
    buf: JobBuffer[int] = JobBuffer()
    buf.push_many([1, 2])
    buf.push_many([3])
    assert [await buf.pop() for _ in range(3)] == [1, 2, 3]


async def test_several_runners_share_one_batch() -> None:
    buf: JobBuffer[int] = JobBuffer()
    got: list[int | None] = []

    async def runner() -> None:
        got.append(await buf.pop())

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            for _ in range(3):
                tg.start_soon(runner)
            await anyio.wait_all_tasks_blocked()
            buf.push_many([1, 2])
            await anyio.wait_all_tasks_blocked()
            assert sorted(x for x in got if x is not None) == [1, 2]
            assert len(got) == 2  # the third runner waits again
            buf.push_many([3])
    assert sorted(x for x in got if x is not None) == [1, 2, 3]


async def test_close_makes_pop_return_none_once_empty() -> None:
    buf: JobBuffer[int] = JobBuffer()
    buf.push_many([1])
    buf.close()
    assert await buf.pop() == 1  # what is buffered still runs
    assert await buf.pop() is None
    assert await buf.pop() is None


async def test_close_wakes_waiting_runners() -> None:
    buf: JobBuffer[int] = JobBuffer()
    got: list[int | None] = []

    async def runner() -> None:
        got.append(await buf.pop())

    with anyio.fail_after(HANG_GUARD_S):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner)
            tg.start_soon(runner)
            await anyio.wait_all_tasks_blocked()
            buf.close()
    assert got == [None, None]


def test_take_all_empties_it() -> None:
    buf: JobBuffer[int] = JobBuffer()
    buf.push_many([1, 2, 3])
    assert buf.take_all() == [1, 2, 3]
    assert len(buf) == 0
    assert buf.take_all() == []


@pytest.mark.parametrize("items", [[], [1], list(range(50))])
def test_len_counts_buffered_jobs(items: list[int]) -> None:
    buf: JobBuffer[int] = JobBuffer()
    buf.push_many(items)
    assert len(buf) == len(items)
