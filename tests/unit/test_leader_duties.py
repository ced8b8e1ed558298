"""repeat(): a maintenance duty survives its errors and keeps its cadence."""

from __future__ import annotations

import anyio

from pgqueue.maintenance import repeat


async def test_a_failing_step_is_reported_and_runs_again() -> None:
    calls: list[int] = []
    reported: list[tuple[str, str]] = []
    enough = anyio.Event()

    async def step() -> float | None:
        calls.append(len(calls))
        if len(calls) == 1:
            raise RuntimeError("database away")
        if len(calls) == 3:
            enough.set()
        return 0.0 if len(calls) == 2 else None

    def report(exc: BaseException, action: str) -> None:
        reported.append((str(exc), action))

    duty = repeat(step, 0.001, "periodic", report)
    async with anyio.create_task_group() as tg:
        tg.start_soon(duty)
        with anyio.fail_after(10):
            await enough.wait()
        tg.cancel_scope.cancel()
    assert reported == [("database away", "periodic")]
    assert len(calls) >= 3
