"""The worker freezes the start-up heap once per process (``freeze_gc``), and only when asked.

The freeze is process-wide and happens once, so each case runs in a fresh interpreter:
in this test process an earlier test's worker may already have frozen the heap.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from pgqueue import ConfigError
from pgqueue._config import WorkerConfig

_SCRIPT = textwrap.dedent(
    """
    import gc, sys
    import anyio
    from pgqueue import Scheduler

    async def main(freeze: bool) -> None:
        s = Scheduler.in_memory()

        @s.job("noop")
        async def noop(job) -> None:
            return None

        async with s:
            before = gc.get_freeze_count()
            for _ in range(2):  # a second worker in the same process does not freeze again
                w = s.worker(freeze_gc=freeze)
                async with anyio.create_task_group() as tg:
                    await tg.start(w.run)
                    after_start = gc.get_freeze_count()
                    await w.shutdown()
                print(before, after_start, flush=True)
                gc.unfreeze()  # the second worker must leave it unfrozen

    anyio.run(main, sys.argv[1] == "1")
    """
)


def _counts(freeze: bool) -> list[tuple[int, int]]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "1" if freeze else "0"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [(int(a), int(b)) for a, b in (line.split() for line in out.splitlines())]


def test_the_first_worker_freezes_the_heap_and_a_second_one_does_not() -> None:
    (before, first), (_, second) = _counts(freeze=True)
    assert before == 0
    assert first > 0  # everything alive at the first start left the collector's reach
    assert second == 0  # unfrozen after the first; the second start froze nothing


def test_freeze_gc_false_leaves_the_collector_alone() -> None:
    assert _counts(freeze=False) == [(0, 0), (0, 0)]


def test_freeze_gc_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="freeze_gc must be True or False"):
        WorkerConfig.build(["q"], freeze_gc=1)
