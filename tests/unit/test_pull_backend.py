"""Which backends the pull API runs on: both of pgqueue's, and a clear error for any other."""

from __future__ import annotations

from typing import cast

import pytest

from pgqueue import ConfigError, Scheduler
from pgqueue.pull.store import PullStore
from pgqueue.store import Store
from pgqueue.store.memory import MemoryStore
from pgqueue.testing import advance


class _NoLeases:
    """A backend with a schema and nothing else: not a PullStore."""

    schema = "custom"


def test_the_memory_store_is_a_pull_store() -> None:
    assert isinstance(MemoryStore(), PullStore)


async def test_a_backend_without_leases_is_refused_with_a_config_error() -> None:
    s = Scheduler(backend=cast("Store", _NoLeases()))
    with pytest.raises(ConfigError, match="needs a backend with leases"):
        await s.claim(1)
    with pytest.raises(ConfigError, match="_NoLeases"):
        await s.dequeue(timeout=0)


async def test_a_memory_consumer_is_forgotten_once_idle_and_holding_nothing() -> None:
    s = Scheduler.in_memory()
    s.declare("t")
    store = await s.open()
    assert isinstance(store, MemoryStore)
    await s.schedule("t", None, queue="q")
    lease = await s.dequeue(queues=["q"], timeout=0, lease=3600)
    assert lease is not None
    advance(s, 700)
    assert await store.consumers_forget(600) == 0  # it holds a job
    await lease.finish()
    assert await s.dequeue(queues=["q"], timeout=0) is None  # a claim, even an empty one, is activity
    assert await store.consumers_forget(600) == 0
    advance(s, 700)
    assert await store.consumers_forget(600) == 1
    assert await s.list_workers() == []
    await s.schedule("t", None, queue="q")
    again = await s.dequeue(queues=["q"], timeout=0)  # registers again
    assert again is not None
    assert again.owner != lease.owner


async def test_closing_leaves_a_memory_consumer_that_holds_a_lease_and_removes_one_that_does_not() -> None:
    s = Scheduler.in_memory()
    store = await s.open()
    a, b = Scheduler(backend=store), Scheduler(backend=store)
    for each in (s, a, b):
        each.declare("t")
    await s.schedule("t", None, queue="q")
    await s.schedule("t", None, queue="q")
    kept = await a.dequeue(queues=["q"], timeout=0)
    assert kept is not None
    await a.close()
    assert [w.id for w in await s.list_workers()] == [kept.owner]  # its lease is still good
    await (await s.get_lease(kept.token)).finish()
    done = await b.dequeue(queues=["q"], timeout=0)
    assert done is not None
    await done.finish()
    await b.close()
    assert [w.id for w in await s.list_workers()] == [kept.owner]  # b's went; a's stays until forgotten
