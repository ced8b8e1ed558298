"""Which backends the pull API runs on: both of pgqueue's, and a clear error for any other."""

from __future__ import annotations

from typing import cast

import pytest

from pgqueue import ConfigError, Scheduler
from pgqueue.pull.store import PullStore
from pgqueue.store import Store
from pgqueue.store.memory import MemoryStore


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
