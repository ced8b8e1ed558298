"""Typed params: a job type's params model, validated when a job is scheduled and when it runs.

``@scheduler.job("send", params=SendEmail)`` takes a pydantic model or a dataclass. At
``schedule()`` the params (a model instance or a plain dict) are validated and stored as
the model's JSON; a value the model refuses raises :class:`ParamsValidationError` and
nothing is written. The handler's ``job.params`` is the validated model instance.

pydantic does the validating (dataclasses through its ``TypeAdapter``) and is imported only
when a type declares a model, so untyped job types need nothing beyond pgqueue's own
dependencies (``pip install 'pgqueue[pydantic]'`` for typed ones).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol

from ._errors import ConfigError, PgQueueError

__all__ = ["ParamsAdapter", "ParamsValidationError", "adapter_for"]


class ParamsValidationError(PgQueueError, ValueError):
    """Params that the job type's model refuses; nothing was written.

    The message lists each problem (``field: reason``); ``__cause__`` is pydantic's
    ``ValidationError``, whose ``errors()`` has the details.
    """


class ParamsAdapter(Protocol):
    """What pgqueue needs of a params model."""

    def validate(self, value: object) -> object:
        """The model instance for ``value`` (a dict, or an instance already)."""
        ...

    def to_json(self, model: object) -> object:
        """The instance as plain JSON values, for the job row."""
        ...

    def schema(self) -> dict[str, Any]:
        """The model's JSON Schema."""
        ...


class _PydanticAdapter:
    """A pydantic ``TypeAdapter`` over the model (a BaseModel or a dataclass)."""

    def __init__(self, model: type, name: str) -> None:
        try:
            import pydantic  # noqa: PLC0415 - optional: only typed job types need it
        except ImportError as exc:
            what = f"params={model.__qualname__} for job type {name!r}"
            raise ConfigError(f"{what} needs pydantic: pip install 'pgqueue[pydantic]'") from exc
        self._pydantic = pydantic
        self._adapter: Any = pydantic.TypeAdapter(model)  # Any: pydantic's generic adapter
        self._name = name

    def validate(self, value: object) -> object:
        try:
            return self._adapter.validate_python(value)
        except self._pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'params'}: {e['msg']}" for e in exc.errors()
            )
            raise ParamsValidationError(
                f"params for job type {self._name!r} are invalid: {problems}"
            ) from exc

    def to_json(self, model: object) -> object:
        return self._adapter.dump_python(model, mode="json")

    def schema(self) -> dict[str, Any]:
        result: dict[str, Any] = self._adapter.json_schema()
        return result


def adapter_for(model: object, name: str) -> ParamsAdapter:
    """The adapter for a job type's ``params=``: a pydantic model class or a dataclass."""
    if not isinstance(model, type) or not (
        callable(getattr(model, "model_validate", None)) or dataclasses.is_dataclass(model)
    ):
        raise ConfigError(
            f"params for job type {name!r} must be a pydantic model class or a dataclass, got {model!r}"
        )
    return _PydanticAdapter(model, name)
