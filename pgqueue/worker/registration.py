"""A worker's registration: the schema check and its row, while its held connections open.

The pool connects on first use, so the registration, the first claim and the first flush
would otherwise each wait for a connection of their own (a few ms each, against a fraction
of a second for a 20,000-job drain): the connections the claims and the flushes keep open
alongside. A database that is down or restarting is waited out with backoff, each failure
reported; a missing or newer schema, a wrong password or an unknown database fail at once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import anyio

from pgqueue._backoff import Backoff
from pgqueue._clock import Clock
from pgqueue._errors import SchemaError
from pgqueue.store import Held, WorkerBackend

from .lease import Identity

__all__ = ["register"]


async def register(
    store: WorkerBackend,
    *,
    identity: Identity,
    queues: Sequence[str],
    clock: Clock,
    held: Sequence[Held | None],
    stop: anyio.Event,
    report: Callable[..., None],
) -> bool:
    """Register while ``held`` open; False when ``stop`` came first (nothing registered).

    The caller gives the held connections back in every case.
    """
    async with anyio.create_task_group() as tg:
        for h in held:
            if h is not None:
                tg.start_soon(h.open)
        registered = await _register_with_retry(
            store, identity=identity, queues=queues, clock=clock, stop=stop, report=report
        )
        if not registered:
            tg.cancel_scope.cancel()
    return registered


async def _register_with_retry(
    store: WorkerBackend,
    *,
    identity: Identity,
    queues: Sequence[str],
    clock: Clock,
    stop: anyio.Event,
    report: Callable[..., None],
) -> bool:
    backoff = Backoff()
    while not stop.is_set():
        try:
            await store.schema_check()
            await identity.register(store, queues, clock)
        except SchemaError:
            raise
        except Exception as exc:
            if not store.is_unavailable(exc):
                raise  # wrong password, unknown database, a bug: waiting will not help
            delay = backoff.failed()
            report(exc, "start", retry_in_s=delay)
            with anyio.move_on_after(delay):
                await stop.wait()
            continue
        return True
    return False
