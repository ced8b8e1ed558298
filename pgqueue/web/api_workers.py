"""The API's worker write route: remove a worker's row (``Scheduler.remove_worker``).

Guarded as every write is (token, read-only, cross-site checks in ``_security.py``); the
body is read as strictly as the job routes read theirs (``api_jobs._body``). A worker that
still holds jobs is a 409 (``has_active_jobs``) unless ``{"force": true}``; an unknown id
is a 404.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.routing import BaseRoute, Route

from pgqueue._errors import WorkerHasActiveJobs

from . import api_jobs
from ._context import web_context
from ._responses import ApiError, json_response

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["routes"]

_MAX_ID = 2**63 - 1  # a bigint: a larger id is a bad request, never a database error
_REMOVE_FIELDS = frozenset({"force"})


def _worker_id(request: Request) -> int:
    text: str = request.path_params["worker_id"]
    if not text.isascii() or not text.isdigit() or not 1 <= int(text) <= _MAX_ID:
        raise ApiError(400, "bad_request", f"a worker id is an integer from 1 to {_MAX_ID}, got {text!r}")
    return int(text)


async def remove(request: Request) -> Response:
    """Remove a worker: 409 while it holds jobs, unless ``force`` releases them as reaping does."""
    worker_id = _worker_id(request)
    body = await api_jobs._body(request, _REMOVE_FIELDS, required=False)  # noqa: SLF001 - the API's one body reader
    force = body.get("force", False)
    if not isinstance(force, bool):
        raise ApiError(400, "bad_request", f"force must be true or false, got {force!r}")
    try:
        released = await web_context(request).scheduler.remove_worker(worker_id, force=force)
    except WorkerHasActiveJobs as exc:
        message = f'worker {worker_id} holds {exc.held} running job(s); {{"force": true}} releases them'
        raise ApiError(409, "has_active_jobs", message) from None
    return json_response({"id": worker_id, "removed": True, "jobs_released": released})


def routes() -> list[BaseRoute]:
    """The worker write routes, relative to ``/api``."""
    return [Route("/workers/{worker_id}/remove", remove, methods=["POST"], name="remove_worker")]
