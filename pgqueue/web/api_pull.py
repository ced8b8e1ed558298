"""The pull API over HTTP: lease jobs to a worker in another process, host or language.

The routes are the Scheduler's pull calls (``dequeue``, ``claim``, ``dequeue_by_id``,
``get_lease`` and the lease's ``heartbeat``/``finish``/``fail``/``requeue``), so leases
taken here are the ones :mod:`pgqueue.pull` hands out: fenced by their token, freed on
expiry, logged like a worker's runs. The token is the only state a client keeps; the app
keeps none, so any number of app processes can serve the same schema.

Waiting: ``POST /dequeue`` long-polls, holding the request open up to ``timeout`` seconds
(at most :data:`MAX_WAIT_S`, so proxies with a one-minute idle limit let it through).
While it waits, a task watches the connection: a client that goes away cancels the wait,
and a lease taken in that instant is released (no attempt counted) rather than left to
expire.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import math
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Final

import anyio
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from pgqueue._errors import MAX_DELAY_S, JobCancelled, LeaseLost, NotPending, unwrap_group
from pgqueue._pull_api import MAX_CLAIM
from pgqueue.pull.store import PullStore

from ._context import web_context
from ._responses import ApiError, json_response
from .api_jobs import _body, _job_id  # the API's strict readers: one behaviour for every body

if TYPE_CHECKING:
    from starlette.requests import Request

    from pgqueue._scheduler import Scheduler
    from pgqueue.pull import Lease

__all__ = ["DEFAULT_WAIT_S", "MAX_WAIT_S", "lease_json", "routes"]

DEFAULT_WAIT_S: Final = 30.0  # a dequeue's long-poll when the body names none
MAX_WAIT_S: Final = 60.0  # the longest long-poll: past it, proxies and clients time out idle requests

_DEQUEUE_FIELDS = frozenset({"types", "queues", "timeout", "lease", "n"})
_LEASE_FIELDS = frozenset({"lease"})
_FINISH_FIELDS = frozenset({"result"})
_FAIL_FIELDS = frozenset({"error", "retry_at", "retry_in"})
_NO_FIELDS: frozenset[str] = frozenset()
_TOKEN_MAX = 60  # three numbers of at most 19 digits and two dashes: longer is no token


def _bad(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


def lease_json(lease: Lease) -> dict[str, Any]:
    """What a client needs to run a leased job and to act on its lease."""
    job = lease.job
    out: dict[str, Any] = {
        "token": lease.token,
        "id": job.id,
        "type": job.type,
        "queue": job.queue,
        "params": job.params,
        "attempt": lease.attempt,
        "priority": job.priority,
        "expires_at": lease.expires_at,
        "lease_s": lease.duration,
        "tenant": job.tenant,
    }
    return out


@contextlib.asynccontextmanager
async def _pull_errors() -> AsyncIterator[None]:
    """The pull API's refusals as the API's errors: 409s that say what became of the lease."""
    try:
        yield
    except LeaseLost as exc:
        notes = "; ".join(getattr(exc, "__notes__", ()))
        message = f"{exc}: {notes}" if notes else str(exc)
        raise ApiError(409, "lease_lost", message) from None
    except JobCancelled as exc:
        raise ApiError(409, "job_cancelled", str(exc)) from None
    except NotPending as exc:
        raise ApiError(409, "not_pending", str(exc)) from None


async def _scheduler(request: Request) -> Scheduler:
    """The served scheduler, when its backend can lease jobs (both of pgqueue's); 501 otherwise."""
    scheduler = web_context(request).scheduler
    if not isinstance(await scheduler.open(), PullStore):
        raise ApiError(
            501, "not_supported", "the pull API needs a backend that leases jobs (PostgreSQL or memory)"
        )
    return scheduler


def _names(body: dict[str, Any], field: str) -> list[str] | None:
    value = body.get(field)
    if value is None:
        return None
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise _bad(f"{field} must be a non-empty list of names, or null")
    return value


def _seconds(body: dict[str, Any], field: str, default: float, top: float) -> float:
    value = body.get(field)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise _bad(f"{field} must be a number of seconds, got {type(value).__name__}")
    if not (math.isfinite(value) and 0 <= value <= top):
        raise _bad(f"{field} must be between 0 and {top:g} seconds, got {value!r}")
    return float(value)


def _lease_s(body: dict[str, Any]) -> float | None:
    """A lease duration from the body; its range (more than 0, at most a day) is the Scheduler's check."""
    if body.get("lease") is None:
        return None
    return _seconds(body, "lease", 0.0, MAX_DELAY_S)


def _token(request: Request) -> str:
    token: str = request.path_params["token"]
    if len(token) > _TOKEN_MAX:
        raise _bad(f"malformed lease token {token[:_TOKEN_MAX]!r}...")
    return token


async def _disconnected(request: Request) -> None:
    """Return once the client has gone away (the body is read: the next message says so)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


@dataclasses.dataclass(frozen=True, slots=True)
class _Ask:
    """A dequeue's body, checked before anything waits."""

    n: int
    wait: float
    options: dict[str, Any]  # types, queues and (when given) lease, as the Scheduler takes them

    @classmethod
    def read(cls, body: dict[str, Any]) -> _Ask:
        n = body.get("n", 1)
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_CLAIM:
            raise _bad(f"n must be an integer from 1 to {MAX_CLAIM}, got {n!r}")
        options: dict[str, Any] = {"types": _names(body, "types"), "queues": _names(body, "queues")}
        lease = _lease_s(body)
        if lease is not None:
            options["lease"] = lease
        return cls(n, _seconds(body, "timeout", DEFAULT_WAIT_S, MAX_WAIT_S), options)


async def _take(scheduler: Scheduler, ask: _Ask, got: list[Lease]) -> None:
    """Lease into ``got``: one job (waiting for it), or with ``n`` up to n (waiting for the first).

    With ``n`` > 1, the due jobs are claimed at once (up to n) without waiting; when none
    is due, the call waits for one as a plain dequeue does, then claims up to n - 1 more
    that are due by then. ``got`` fills as leases come, so that a cancelled call leaves
    what it took in view.
    """
    if ask.n > 1:
        got.extend(await scheduler.claim(ask.n, **ask.options))
        if got:
            return
    first = await scheduler.dequeue(timeout=ask.wait, **ask.options)
    if first is None:
        return
    got.append(first)
    if ask.n > 1:
        got.extend(await scheduler.claim(ask.n - 1, **ask.options))


async def dequeue(request: Request) -> Response:
    """Lease due jobs, long-polling up to ``timeout`` for the first; 204 when none came."""
    ask = _Ask.read(await _body(request, _DEQUEUE_FIELDS, required=False))
    scheduler = await _scheduler(request)
    got: list[Lease] = []
    gone = False
    async with _pull_errors():
        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    nonlocal gone
                    await _disconnected(request)
                    gone = True
                    tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await _take(scheduler, ask, got)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the task group wraps what the dequeue raised
            raise unwrap_group(group) from None
    if gone:
        # Nobody reads the answer: give the jobs back now rather than at the lease's end.
        with anyio.CancelScope(shield=True):
            for lease in got:
                with contextlib.suppress(Exception):
                    await lease.release()
        return Response(status_code=204)
    if not got:
        return Response(status_code=204)
    return json_response({"leases": [lease_json(lease) for lease in got]})


async def dequeue_by_id(request: Request) -> Response:
    """Lease one given job now if it is waiting to run; 409 ``not_pending`` otherwise."""
    job_id = _job_id(request)
    body = await _body(request, _LEASE_FIELDS, required=False)
    lease = _lease_s(body)
    scheduler = await _scheduler(request)
    async with _pull_errors():
        got = await (
            scheduler.dequeue_by_id(job_id) if lease is None else scheduler.dequeue_by_id(job_id, lease=lease)
        )
    return json_response({"leases": [lease_json(got)]})


async def _held(request: Request, fields: frozenset[str]) -> tuple[Lease, dict[str, Any]]:
    """The lease the path's token names (409 when it no longer holds its job), and the body."""
    token = _token(request)
    body = await _body(request, fields, required=False)
    lease = _lease_s(body)
    scheduler = await _scheduler(request)
    async with _pull_errors():
        got = await (scheduler.get_lease(token) if lease is None else scheduler.get_lease(token, lease=lease))
    return got, body


async def heartbeat(request: Request) -> Response:
    """Extend the lease to now + ``lease`` seconds (default 30: the database keeps no duration)."""
    lease, _ = await _held(request, _LEASE_FIELDS)
    async with _pull_errors():
        until = await lease.heartbeat()
    return json_response({"token": lease.token, "expires_at": until})


async def finish(request: Request) -> Response:
    """End the leased job as succeeded, with ``result`` stored with the run."""
    lease, body = await _held(request, _FINISH_FIELDS)
    async with _pull_errors():
        await lease.finish(body.get("result"))
    return json_response({"token": lease.token, "id": lease.job.id, "outcome": "succeeded"})


def _retry(body: dict[str, Any]) -> dt.datetime | float | None:
    """``retry_at`` (ISO 8601 with an offset) or ``retry_in`` (seconds from now), not both."""
    retry_at, retry_in = body.get("retry_at"), body.get("retry_in")
    if retry_at is not None and retry_in is not None:
        raise _bad("give retry_at or retry_in, not both")
    if retry_in is not None:
        return _seconds(body, "retry_in", 0.0, MAX_DELAY_S)
    if retry_at is None:
        return None
    if not isinstance(retry_at, str):
        raise _bad("retry_at must be an ISO 8601 string with an offset")
    try:
        when = dt.datetime.fromisoformat(retry_at)
    except ValueError:
        raise _bad(f"retry_at must be an ISO 8601 time with an offset, got {retry_at!r}") from None
    if when.tzinfo is None or when.utcoffset() is None:
        raise _bad(f"retry_at must carry its UTC offset (like +00:00 or Z), got {retry_at!r}")
    try:
        when.astimezone(dt.UTC)
    except OverflowError:
        raise _bad(f"retry_at is out of range once in UTC, got {retry_at!r}") from None
    return when


async def fail(request: Request) -> Response:
    """Record a failed run: retried at ``retry_at``/``retry_in``, else as the type's error filter says."""
    lease, body = await _held(request, _FAIL_FIELDS)
    error = body.get("error")
    if not isinstance(error, str) or not error:
        raise _bad("error (a non-empty string) is required")
    retry = _retry(body)
    async with _pull_errors():
        again = await lease.fail(error, retry)
    return json_response({"token": lease.token, "id": lease.job.id, "retry_at": again})


async def requeue(request: Request) -> Response:
    """Give the job back to run again now; ``requeued`` is false when that was its last attempt."""
    lease, _ = await _held(request, _NO_FIELDS)
    async with _pull_errors():
        again = await lease.requeue()
    return json_response({"token": lease.token, "id": lease.job.id, "requeued": again})


def routes() -> list[BaseRoute]:
    """The pull routes, relative to ``/api``: before ``/jobs/{job_id}/{action}``, which matches them too."""
    return [
        Route("/dequeue", dequeue, methods=["POST"], name="dequeue"),
        Route("/jobs/{job_id}/dequeue", dequeue_by_id, methods=["POST"], name="dequeue_by_id"),
        Route("/leases/{token}/heartbeat", heartbeat, methods=["POST"], name="lease_heartbeat"),
        Route("/leases/{token}/finish", finish, methods=["POST"], name="lease_finish"),
        Route("/leases/{token}/fail", fail, methods=["POST"], name="lease_fail"),
        Route("/leases/{token}/requeue", requeue, methods=["POST"], name="lease_requeue"),
    ]
