"""JSON in and out of the database: the only module that uses orjson.

Params accept what a caller naturally has: dict, list, str, numbers, bool, None,
dataclasses, datetimes, UUIDs (orjson handles these natively) and pydantic models
(through their ``model_dump``). Anything else fails here, before a row is written.

JSON has no NaN or ±Infinity, and orjson writes them as ``null``: a value that would come
back as None is refused instead. The check walks the value only when the encoded text
holds a ``null`` at all, so ordinary params and results pay one substring search.
Nesting deeper than :data:`MAX_DEPTH` levels is refused by orjson.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

import orjson

from ._errors import ParamsEncodeError

__all__ = ["MAX_DEPTH", "decode", "encode"]

MAX_DEPTH = 254  # orjson's recursion limit: 254 nested lists or dicts encode, 255 do not


def _default(obj: Any) -> Any:  # noqa: ANN401 - orjson's hook takes and returns anything
    dump = getattr(obj, "model_dump", None)
    if callable(dump):  # pydantic v2 model
        return dump(mode="json")
    raise TypeError(f"type {type(obj).__qualname__} is not JSON serializable")


def encode(value: object, *, what: str = "params") -> str:
    """Encode to JSON text; a value orjson cannot encode raises :class:`ParamsEncodeError`."""
    try:
        out = orjson.dumps(value, default=_default)
    except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
        reason = f"nested deeper than {MAX_DEPTH} levels" if "Recursion limit" in str(exc) else str(exc)
        raise ParamsEncodeError(f"{what} cannot be encoded as JSON: {reason}") from exc
    if b"null" in out:
        where = _non_finite(value, "")
        if where is not None:
            path, number = where
            raise ParamsEncodeError(
                f"{what} cannot be encoded as JSON: {number} at {path or 'the top level'} "
                "(JSON has no NaN or Infinity; send None or a string instead)"
            )
    return out.decode()


def _non_finite(value: object, path: str) -> tuple[str, float] | None:
    """The path and value of the first NaN or infinity, walked as orjson encodes ``value``.

    Recursion is bounded: orjson has already encoded the value, so it nests at most
    MAX_DEPTH levels.
    """
    if isinstance(value, float):
        return None if math.isfinite(value) else (path, value)
    children: list[tuple[str, object]] = []
    if isinstance(value, dict):
        children = [(f"{path}[{k!r}]", v) for k, v in value.items()]
    elif isinstance(value, list | tuple):
        children = [(f"{path}[{i}]", v) for i, v in enumerate(value)]
    elif isinstance(value, enum.Enum):
        children = [(path, value.value)]
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        children = [
            (f"{path}.{f.name}", getattr(value, f.name))
            for f in dataclasses.fields(value)
            if not f.name.startswith("_")  # orjson leaves private fields out
        ]
    elif callable(getattr(value, "model_dump", None)):
        children = [(path, _default(value))]
    for child_path, child in children:
        found = _non_finite(child, child_path)
        if found is not None:
            return found
    return None


def decode(text: str | None) -> Any:  # noqa: ANN401 - JSON is untyped until a model parses it
    """Decode JSON text from the database (``None`` stays ``None``)."""
    return None if text is None else orjson.loads(text)
