"""Claims and flushes take turns: a fair lock that an urgent statement passes by, never for good."""

from __future__ import annotations

import anyio
import pytest

from pgqueue import ConfigError, Scheduler
from pgqueue._config import WorkerConfig
from pgqueue.worker import turns as turns_module
from pgqueue.worker.turns import Turns

pytestmark = pytest.mark.anyio


async def _hold(turns: Turns, entered: anyio.Event, leave: anyio.Event, order: list[str], name: str) -> None:
    async with turns.turn(urgent=False):
        order.append(f"{name} in")
        entered.set()
        await leave.wait()
        order.append(f"{name} out")


async def test_a_statement_waits_for_the_other_to_finish() -> None:
    turns, order = Turns(), list[str]()
    entered, leave = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, turns, entered, leave, order, "flush")
        await entered.wait()

        async def claim() -> None:
            async with turns.turn(urgent=False):
                order.append("claim in")

        tg.start_soon(claim)
        await anyio.wait_all_tasks_blocked()
        assert order == ["flush in"]  # the claim waits
        leave.set()
    assert order == ["flush in", "flush out", "claim in"]
    assert turns.waited == 1


@pytest.mark.parametrize(("enabled", "urgent"), [(True, True), (False, False)])
async def test_an_urgent_statement_or_disabled_turns_go_at_once(enabled: bool, urgent: bool) -> None:
    turns, order = Turns(enabled=enabled), list[str]()
    entered, leave = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, turns, entered, leave, order, "flush")
        await entered.wait()
        async with turns.turn(urgent=urgent):
            order.append("claim in")
        leave.set()
    assert order == ["flush in", "claim in", "flush out"]


async def test_a_statement_that_hangs_delays_the_other_only_for_the_bound(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(turns_module, "MAX_WAIT_S", 0.01)
    turns, order = Turns(), list[str]()
    entered, never = anyio.Event(), anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, turns, entered, never, order, "hung claim")
        await entered.wait()
        async with turns.turn(urgent=False):  # gives up waiting and goes
            order.append("flush in")
        tg.cancel_scope.cancel()
    assert order == ["hung claim in", "flush in"]


async def test_back_to_back_statements_do_not_starve_the_waiting_one() -> None:
    """First come, first served: a flush that asks again queues behind the waiting claim."""
    turns, order = Turns(), list[str]()
    entered, leave = anyio.Event(), anyio.Event()

    async def statement(name: str) -> None:
        async with turns.turn(urgent=False):
            order.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(_hold, turns, entered, leave, order, "flush 1")
        await entered.wait()
        tg.start_soon(statement, "claim")
        await anyio.wait_all_tasks_blocked()
        tg.start_soon(statement, "flush 2")
        await anyio.wait_all_tasks_blocked()
        leave.set()
    assert order == ["flush 1 in", "flush 1 out", "claim", "flush 2"]


def test_take_turns_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="take_turns must be True or False"):
        WorkerConfig.build(["q"], take_turns="yes")


def test_take_turns_defaults_to_whether_the_server_is_on_this_machine() -> None:
    assert WorkerConfig.build(["q"]).take_turns is False
    assert WorkerConfig.build(["q"], False, True).take_turns is True
    assert WorkerConfig.build(["q"], False, True, take_turns=False).take_turns is False  # given beats derived
    local = Scheduler("postgresql://u@127.0.0.1/db")
    local.register("t", lambda job: None)
    assert local.worker().config.take_turns is True
    remote = Scheduler("postgresql://u@db.example.com/db")
    remote.register("t", lambda job: None)
    assert remote.worker().config.take_turns is False
    assert remote.worker(take_turns=True).config.take_turns is True
    memory = Scheduler.in_memory()
    memory.register("t", lambda job: None)
    assert memory.worker().config.take_turns is False


async def test_an_urgent_statement_goes_at_once_right_after_the_other_hands_over(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The lock is released to a waiter that has not run yet: an urgent statement still goes at once.

    The fetcher claims again without an await in between when the last claim came back
    full and the runners drained meanwhile: that claim is urgent (fewer jobs wait than
    runners), and must not queue behind the flush the release just woke.
    """
    monkeypatch.setattr(turns_module, "MAX_WAIT_S", 3600.0)  # only the lock decides, not the bound
    turns, order = Turns(), list[str]()
    entered, leave, flush_may_end = anyio.Event(), anyio.Event(), anyio.Event()

    async def flush() -> None:
        async with turns.turn(urgent=False):
            order.append("flush in")
            await flush_may_end.wait()

    async def claims() -> None:
        async with turns.turn(urgent=False):
            entered.set()
            await leave.wait()
        # no await between the release and the next (urgent) claim
        async with turns.turn(urgent=True):
            order.append("urgent claim in")

    async with anyio.create_task_group() as tg:
        tg.start_soon(claims)
        await entered.wait()
        tg.start_soon(flush)
        await anyio.wait_all_tasks_blocked()  # the flush waits for its turn
        leave.set()
        await anyio.wait_all_tasks_blocked()
        snapshot = list(order)
        flush_may_end.set()
    assert "urgent claim in" in snapshot, snapshot  # not queued behind the flush it woke
