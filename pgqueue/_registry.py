"""Job types by name: the handler, its default queue and its retry policy.

The scheduler validates names against this registry before writing anything; the worker
looks handlers up here. Both processes import the same module that registers the types.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from ._config import MAX_ATTEMPTS, check_max_attempts, check_name, check_timeout
from ._errors import ConfigError, UnknownJobTypeError, check_delay
from ._models import JobHandler
from ._params import ParamsAdapter, adapter_for
from ._records import JobTypeInfo
from ._retry import ErrorFilter
from .periodic.spec import PeriodicSpec

if TYPE_CHECKING:  # _enqueue imports this module
    from ._enqueue import Target

__all__ = ["JobType", "Registry"]

DEFAULT_QUEUE = "default"


@dataclasses.dataclass(frozen=True, slots=True)
class JobType:
    """A registered job type."""

    name: str
    """Stored in each job row; the key that finds the handler."""
    handler: JobHandler
    """The job's code."""
    queue: str = DEFAULT_QUEUE
    """Queue used when ``schedule`` names none."""
    retry: ErrorFilter | None = None
    """Error filter deciding retries; None: no retries except an explicit ErrorWithRetry."""
    is_async: bool = True
    """False for a plain function, which runs in a worker thread."""
    timeout: float | None = None
    """Seconds a run may take (None: no limit); a job's own ``timeout`` overrides it."""
    max_attempts: int = MAX_ATTEMPTS
    """Runs the job gets at most, crashes included; after that it ends as failed."""
    params_model: type | None = None
    """The params model (pydantic model or dataclass), None for untyped params."""
    params: ParamsAdapter | None = None
    """Validates params against ``params_model`` (at schedule and before each run)."""
    unique_for: float = 0.0
    """Seconds a job's unique key stays held after it succeeds (0: freed when it ends)."""
    suspendable: bool = False
    """Whether suspend() may ask a running job of this type to stop at a checkpoint."""
    unique_kept_after: tuple[str, ...] = ("succeeded",)
    """The end states after which a job's unique key stays held for ``unique_for``."""


UNIQUE_ENDS = ("succeeded", "failed", "cancelled")  # the end states unique_kept_after may name


def _check_ends(name: str, ends: Iterable[str]) -> tuple[str, ...]:
    if isinstance(ends, str) or not isinstance(ends, Iterable):
        raise ConfigError(f"unique_kept_after for job type {name!r} must list end states, got {ends!r}")
    out = tuple(dict.fromkeys(ends))
    for end in out:
        if end not in UNIQUE_ENDS:
            raise ConfigError(
                f"unique_kept_after for job type {name!r}: {end!r} is not an end state "
                f"({', '.join(UNIQUE_ENDS)}); live jobs always hold their key"
            )
    return out


class Registry:
    """Name → :class:`JobType`."""

    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}
        self.by_name: Mapping[str, JobType] = self._types
        """Read-only view for the runner's per-job lookup (one dict get, no call)."""
        self.targets: dict[str, Target] = {}
        """Each type's target for a schedule() call with default options (``_enqueue.prepare``).

        Never invalidated: a registered type is neither replaced nor removed."""
        self.periodic: dict[str, PeriodicSpec] = {}
        """Periodic declarations by name (``@scheduler.periodic``); the enqueuer reads them."""

    def add(
        self,
        name: str,
        handler: JobHandler,
        *,
        queue: str,
        retry: ErrorFilter | None,
        timeout: float | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        params: type | None = None,
        unique_for: float | dt.timedelta = 0.0,
        suspendable: bool = False,
        unique_kept_after: Iterable[str] = ("succeeded",),
    ) -> JobType:
        """Register a type; a second registration of the same name is an error."""
        check_name("job type", name)
        check_name("queue", queue)
        if not callable(handler):
            raise ConfigError(f"handler for job type {name!r} is not callable")
        if retry is not None and not callable(retry):
            raise ConfigError(f"retry for job type {name!r} must be an error filter (callable)")
        if name in self._types:
            raise ConfigError(f"job type {name!r} is already registered")
        if not isinstance(suspendable, bool):
            raise ConfigError(f"suspendable for job type {name!r} must be True or False, got {suspendable!r}")
        jt = JobType(
            name,
            handler,
            queue,
            retry,
            inspect.iscoroutinefunction(handler),
            check_timeout("timeout", timeout),
            check_max_attempts(max_attempts),
            params,
            None if params is None else adapter_for(params, name),
            check_delay(unique_for, "unique_for"),
            suspendable,
            _check_ends(name, unique_kept_after),
        )
        self._types[name] = jt
        return jt

    def add_periodic(self, spec: PeriodicSpec) -> None:
        """Add a periodic declaration; a second one with the same name is an error."""
        if spec.name in self.periodic:
            raise ConfigError(f"periodic {spec.name!r} is already declared")
        self.periodic[spec.name] = spec

    def get(self, name: str) -> JobType | None:
        """The type, or None when this process does not know it."""
        return self._types.get(name)

    def require(self, name: str) -> JobType:
        """The type, or :class:`UnknownJobTypeError` naming the known ones."""
        jt = self._types.get(name)
        if jt is None:
            known = ", ".join(sorted(self._types)) or "none"
            raise UnknownJobTypeError(f"unknown job type {name!r} (registered: {known})")
        return jt

    def describe(self) -> list[JobTypeInfo]:
        """Every registered type, by name, as :meth:`Scheduler.job_types` shows it."""
        return [
            JobTypeInfo(
                name=jt.name,
                queue=jt.queue,
                retry=jt.retry,
                timeout=jt.timeout,
                max_attempts=jt.max_attempts,
                params_schema=None if jt.params is None else jt.params.schema(),
                suspendable=jt.suspendable,
                unique_for=jt.unique_for,
                unique_kept_after=jt.unique_kept_after,
            )
            for jt in (self._types[n] for n in sorted(self._types))
        ]

    def suspendable(self) -> list[str]:
        """The names of the types whose running jobs suspend() may stop."""
        return sorted(n for n, jt in self._types.items() if jt.suspendable)

    def queues(self) -> tuple[str, ...]:
        """Default queues of all registered types, sorted, without duplicates."""
        return tuple(sorted({t.queue for t in self._types.values()}))

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def __len__(self) -> int:
        return len(self._types)
