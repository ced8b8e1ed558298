"""The shared retry schedule of the background loops, and the signals tests wait on."""

from __future__ import annotations

import anyio
import pytest

from pgqueue._backoff import Backoff
from pgqueue._signals import Signal, WorkerSignals


def test_backoff_doubles_up_to_its_cap_and_starts_over_after_a_success() -> None:
    b = Backoff(first=0.1, cap=0.5)
    assert b.current() == 0.1
    assert [b.failed() for _ in range(5)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert b.failures == 5
    b.succeeded()
    assert b.failed() == 0.1


def test_backoff_never_overflows() -> None:
    b = Backoff()
    for _ in range(5000):
        b.failed()
    assert b.current() == 5.0


async def test_a_signal_wakes_waiters_at_their_count() -> None:
    s = Signal()
    reached: list[int] = []

    async def waiter(n: int) -> None:
        await s.wait_count(n)
        reached.append(n)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, 1)
        tg.start_soon(waiter, 3)
        await anyio.wait_all_tasks_blocked()
        s.fire()
        await anyio.wait_all_tasks_blocked()
        assert reached == [1]
        s.fire()
        s.fire()
    assert reached == [1, 3]
    assert s.count == 3


async def test_next_waits_for_a_new_occurrence() -> None:
    s = Signal()
    s.fire()
    with anyio.move_on_after(0.01) as scope:
        await s.next()
    assert scope.cancelled_caught  # the past one does not count
    async with anyio.create_task_group() as tg:
        tg.start_soon(s.next)
        await anyio.wait_all_tasks_blocked()
        s.fire()


def test_each_worker_gets_its_own_signals() -> None:
    a, b = WorkerSignals(), WorkerSignals()
    a.flushed.fire()
    assert (a.flushed.count, b.flushed.count) == (1, 0)


@pytest.mark.parametrize("n", [0, 1])
async def test_a_reached_count_returns_at_once(n: int) -> None:
    s = Signal()
    s.fire()
    with anyio.fail_after(1):
        await s.wait_count(n)
