"""JSON in and out of the database: the only module that uses orjson.

Params accept what a caller naturally has: dict, list, str, numbers, bool, None,
dataclasses, datetimes, UUIDs (orjson handles these natively) and pydantic models
(through their ``model_dump``). Anything else fails here, before a row is written.
"""

from __future__ import annotations

from typing import Any

import orjson

from ._errors import ParamsEncodeError

__all__ = ["decode", "encode"]


def _default(obj: Any) -> Any:  # noqa: ANN401 - orjson's hook takes and returns anything
    dump = getattr(obj, "model_dump", None)
    if callable(dump):  # pydantic v2 model
        return dump(mode="json")
    raise TypeError(f"type {type(obj).__qualname__} is not JSON serializable")


def encode(value: object, *, what: str = "params") -> str:
    """Encode to JSON text; a value orjson cannot encode raises :class:`ParamsEncodeError`."""
    try:
        return orjson.dumps(value, default=_default).decode()
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        raise ParamsEncodeError(f"{what} cannot be encoded as JSON: {exc}") from exc


def decode(text: str | None) -> Any:  # noqa: ANN401 - JSON is untyped until a model parses it
    """Decode JSON text from the database (``None`` stays ``None``)."""
    return None if text is None else orjson.loads(text)
