"""One process of the periodic multi-process test (``test_periodic_processes.py``).

``python tests/integration/_periodic_proc.py DSN SCHEMA SKEW_S``: its own Scheduler with
the declarations every process of the test makes, and a clock the parent drives. It
prints ``ready`` once connected; then for each line on stdin (an ISO 8601 time, the
test's "true" time) it runs one periodic round at that time plus its skew and prints
``ok <jobs enqueued>``. ``quit`` or the end of stdin ends it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys

from pgqueue import Job, Scheduler


async def noop(job: Job) -> None:
    return None


def declare(s: Scheduler) -> None:
    """The declarations of every process of the test (the application's code)."""
    for name in ("every10", "quarter", "minutely"):
        s.register(name, noop, queue="periodic")
    s.add_periodic("every10", every=10, job="every10", params={"k": "e"})  # grace 5 s
    # Seconds-resolution cron in Paris: the test's clock crosses 02:00 -> 03:00 CEST.
    s.add_periodic("quarter", "* * * * * */15", job="quarter", timezone="Europe/Paris")  # grace 7.5 s
    s.add_periodic("minutely", "* * * * *", job="minutely", missed="latest")  # grace 30 s


def say(line: str) -> None:
    """One line to the parent, at once."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


async def main(dsn: str, schema: str, skew_s: float) -> None:
    skew = dt.timedelta(seconds=skew_s)
    loop = asyncio.get_running_loop()
    async with Scheduler(dsn, schema=schema) as s:
        declare(s)
        await s.list_periodic()  # connected, and the schema answers
        say("ready")
        while True:
            line = (await loop.run_in_executor(None, sys.stdin.readline)).strip()
            if line in ("", "quit"):
                return
            now = dt.datetime.fromisoformat(line) + skew
            say(f"ok {await s.enqueue_due_periodic(now)}")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3])))
