"""The worker tunes the collector once per process (``freeze_gc``), and only when asked:
it freezes the start-up heap and raises the young generation's threshold.

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
from pgqueue.worker.collector import YOUNG_THRESHOLD

_SCRIPT = textwrap.dedent(
    """
    import gc, sys
    print(gc.get_threshold()[0], flush=True)  # the interpreter's own default
    import anyio
    from pgqueue import Scheduler

    async def main(freeze: bool) -> None:
        if len(sys.argv) > 2:  # the application's own collector settings, before any worker
            gc.set_threshold(int(sys.argv[2]), 10, 10)
            if sys.argv[3:] == ["off"]:
                gc.disable()
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
                print(before, after_start, gc.get_threshold()[0], gc.isenabled(), flush=True)
                gc.unfreeze()  # the second worker must leave it unfrozen

    anyio.run(main, sys.argv[1] == "1")
    """
)


def _run(freeze: bool, *app_settings: str) -> tuple[str, list[list[str]]]:
    """The default young threshold; per worker start: frozen objects before and after it,
    the young threshold, whether the collector is enabled."""
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT, "1" if freeze else "0", *app_settings],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    default, *starts = out.splitlines()
    return default, [line.split() for line in starts]


def _counts(freeze: bool) -> list[tuple[int, int]]:
    return [(int(a), int(b)) for a, b, *_ in _run(freeze)[1]]


def test_the_first_worker_freezes_the_heap_and_a_second_one_does_not() -> None:
    (before, first), (_, second) = _counts(freeze=True)
    assert before == 0
    assert first > 0  # everything alive at the first start left the collector's reach
    assert second == 0  # unfrozen after the first; the second start froze nothing


def test_freeze_gc_false_leaves_the_collector_alone() -> None:
    assert _counts(freeze=False) == [(0, 0), (0, 0)]
    default, starts = _run(freeze=False)
    assert [row[2:] for row in starts] == [[default, "True"]] * 2


def test_the_first_worker_raises_the_young_threshold() -> None:
    default, starts = _run(freeze=True)
    assert int(default) < YOUNG_THRESHOLD
    assert [row[2:] for row in starts] == [[str(YOUNG_THRESHOLD), "True"]] * 2


@pytest.mark.parametrize(
    ("app_settings", "expected"),
    [
        (("50000",), ["50000", "True"]),  # the application's higher threshold is kept
        (("700", "off"), ["700", "False"]),  # a disabled collector stays as it is
        (("0",), ["0", "True"]),  # so do automatic collections turned off by a zero threshold
    ],
)
def test_the_threshold_is_only_raised_and_never_while_the_collector_is_off(
    app_settings: tuple[str, ...], expected: list[str]
) -> None:
    assert [row[2:] for row in _run(True, *app_settings)[1]] == [expected] * 2


def test_freeze_gc_must_be_a_bool() -> None:
    with pytest.raises(ConfigError, match="freeze_gc must be True or False"):
        WorkerConfig.build(["q"], freeze_gc=1)
