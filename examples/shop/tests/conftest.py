"""The shop's tests get its own scheduler on a test backend: see the pgqueue pytest plugin."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from examples.shop import jobs
from pgqueue import Scheduler


@pytest.fixture
def pgqueue_app() -> Scheduler:
    """The plugin's fixtures hand back this scheduler, its calls sent to the test backend."""
    return jobs.scheduler


@pytest.fixture(autouse=True)
def empty_outbox() -> Iterator[None]:
    jobs.OUTBOX.clear()
    yield
    jobs.OUTBOX.clear()
