"""Per-job log lines: what a handler writes through ``job.log``, and how they read back.

A handler calls ``job.log.info("charged", amount=12)``. The line is encoded at once
(orjson) and kept in the run's memory, next to its result: the flush that writes the run
writes its lines in the same statement (``job_runs.log``), so a line costs no round trip.
The :class:`JobLog` is created on first access to ``job.log``; a handler that never logs
costs the worker nothing.

Shape of a stored line: a JSON object ``{"at": ..., "level": ..., "msg": ..., **fields}``,
``at`` in ISO 8601 (UTC, the worker process's wall clock). A field named like one of the
line's own keys (``at``, ``level``, ``msg``) is stored with a trailing underscore
(``msg_``) rather than overwrite it. A value orjson cannot encode (a set, an object,
an integer beyond 64 bits) is stored as its ``repr``; text is made storable (NUL bytes and
lone surrogates escaped). A log line never fails its run.

Caps: a run keeps at most :data:`MAX_LOG_LINES` lines and :data:`MAX_LOG_BYTES` bytes of
encoded lines. The first line that does not fit closes the log: it and every later line
are dropped and counted, and one last ``warning`` line says how many (its ``dropped``
field). The kept lines are always a prefix of what the handler wrote.

Each line is also emitted on the process's ``pgqueue`` logger as a ``job_log`` event at the
same level (with ``job_id``, ``type``, ``attempt``, ``line`` and ``fields``), capped or not:
a run cut short by a crash loses its stored lines with the dead process's memory, and the
process log is then where they are.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import threading
from typing import Any

import orjson

from ._log import JOB_LOG, get_logger
from ._text import storable

__all__ = ["LEVELS", "MAX_LOG_BYTES", "MAX_LOG_LINES", "JobLog", "LogLine", "decode_lines"]

MAX_LOG_LINES = 1_000
"""Lines one run keeps at most (the dropped-lines marker comes on top)."""
MAX_LOG_BYTES = 128 * 1024
"""Bytes of encoded JSON one run's lines take at most (the marker comes on top)."""
LEVELS = ("debug", "info", "warning", "error")
"""The levels a line can have, lowest first."""

_OWN_KEYS = frozenset({"at", "level", "msg"})
_INT_RANGE = range(-(2**63), 2**64)  # what orjson encodes as an integer
_NUL = b"\\u0000"
_EPOCH = dt.datetime.fromtimestamp(0, dt.UTC)
_log = get_logger()


@dataclasses.dataclass(frozen=True, slots=True)
class LogLine:
    """One line a handler wrote through ``job.log`` during a run."""

    at: dt.datetime
    """When it was written (the worker process's wall clock, in UTC)."""
    level: str
    """``debug``, ``info``, ``warning`` or ``error``."""
    msg: str
    """The message."""
    fields: dict[str, Any]
    """The keyword fields given with it (decoded JSON; unencodable values as their repr)."""


class JobLog:
    """The log of one run: ``debug``, ``info``, ``warning`` and ``error`` append a line.

    Thread-safe: a sync handler runs in a thread, and may start threads of its own.
    """

    __slots__ = ("_dropped", "_lines", "_lock", "_size", "_who")

    def __init__(self, job_id: int, type_: str, attempt: int) -> None:
        self._who = (job_id, type_, attempt)
        self._lines: list[bytes] = []
        self._size = 0  # bytes of the kept lines, with a separator each
        self._dropped = 0
        self._lock = threading.Lock()

    def debug(self, msg: object, /, **fields: object) -> None:
        """Append a ``debug`` line: ``msg`` plus any JSON-encodable keyword fields."""
        self._write("debug", msg, fields)

    def info(self, msg: object, /, **fields: object) -> None:
        """Append an ``info`` line."""
        self._write("info", msg, fields)

    def warning(self, msg: object, /, **fields: object) -> None:
        """Append a ``warning`` line."""
        self._write("warning", msg, fields)

    def error(self, msg: object, /, **fields: object) -> None:
        """Append an ``error`` line."""
        self._write("error", msg, fields)

    def __len__(self) -> int:
        """Lines kept so far (dropped ones not counted)."""
        return len(self._lines)

    def _write(self, level: str, msg: object, fields: dict[str, object]) -> None:
        text = storable(msg if type(msg) is str else _message(msg))
        job_id, type_, attempt = self._who
        getattr(_log, level)(JOB_LOG, job_id=job_id, type=type_, attempt=attempt, line=text, fields=fields)
        with self._lock:
            if self._dropped or len(self._lines) >= MAX_LOG_LINES:
                self._dropped += 1
                return
        data = _encode_line(level, text, fields)
        with self._lock:
            if (
                self._dropped
                or len(self._lines) >= MAX_LOG_LINES
                or self._size + len(data) + 1 > MAX_LOG_BYTES
            ):
                self._dropped += 1
                return
            self._lines.append(data)
            self._size += len(data) + 1

    def encoded(self) -> str | None:
        """The run's lines as one JSON array (what ``job_runs.log`` stores); None for none.

        With lines dropped, the array ends with a ``warning`` line that counts them.
        """
        with self._lock:
            lines, dropped = list(self._lines), self._dropped
        if dropped:
            lines.append(
                _encode_line(
                    "warning",
                    f"{dropped} more log line{'s' if dropped != 1 else ''} dropped: a run keeps "
                    f"at most {MAX_LOG_LINES} lines and {MAX_LOG_BYTES} bytes",
                    {"dropped": dropped},
                )
            )
        if not lines:
            return None
        return (b"[" + b",".join(lines) + b"]").decode()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()


def _encode_line(level: str, msg: str, fields: dict[str, object]) -> bytes:
    """One line as JSON bytes; never raises (see the module docstring)."""
    line: dict[str, object] = {"at": _now(), "level": level, "msg": msg}
    for key, value in fields.items():
        line[f"{key}_" if key in _OWN_KEYS else key] = value
    try:
        data = orjson.dumps(line)
    except (TypeError, ValueError):  # orjson.JSONEncodeError is a TypeError
        data = b""
    if data and _NUL not in data:
        return data
    # The slow path, for the odd line: clean every value, and encode field by field when a
    # value still fails (a cycle, a nesting deeper than orjson allows, a failing __repr__).
    clean = {storable(k): _clean(v) for k, v in line.items()}
    try:
        return orjson.dumps(clean, default=_text_of)
    except (TypeError, ValueError):
        pass
    for key, value in clean.items():
        try:
            orjson.dumps(value, default=_text_of)
        except (TypeError, ValueError):
            clean[key] = _text_of(value)
    return orjson.dumps(clean, default=_text_of)


def _clean(value: object, depth: int = 0) -> object:
    """``value`` with text made storable, keys made text and huge integers as their repr."""
    if depth > 64:  # noqa: PLR2004 - deeper values are kept as their repr, whole
        return _text_of(value)
    if isinstance(value, str):
        return storable(value)
    if isinstance(value, int) and not isinstance(value, bool) and value not in _INT_RANGE:
        return repr(value)
    if isinstance(value, dict):
        return {
            storable(k if isinstance(k, str) else _text_of(k)): _clean(v, depth + 1) for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_clean(v, depth + 1) for v in value]
    return value  # orjson encodes it (a datetime, a UUID, a dataclass...) or calls _text_of


def _message(msg: object) -> str:
    """A message that is not text: ``str(msg)``, or its repr when str() fails."""
    try:
        return str(msg)
    except Exception:  # noqa: BLE001 - a broken __str__ must not fail the run
        return _text_of(msg)


def _text_of(value: object) -> str:
    """``repr(value)`` as storable text; a placeholder when even repr fails."""
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - a broken __repr__ must not fail the run
        return f"<unrepresentable {type(value).__name__}>"
    return storable(text)


def decode_lines(text: str | None) -> list[LogLine]:
    """The stored lines (``job_runs.log``) as records; an empty list for none."""
    if not text:
        return []
    out: list[LogLine] = []
    for raw in orjson.loads(text):
        fields = dict(raw) if isinstance(raw, dict) else {"msg": raw}  # a line written by hand
        at, level, msg = fields.pop("at", None), fields.pop("level", "info"), fields.pop("msg", "")
        out.append(LogLine(_when(at), str(level), str(msg), fields))
    return out


def _when(at: object) -> dt.datetime:
    """A stored ``at``: ISO 8601 text (what the worker writes) or epoch seconds."""
    if isinstance(at, int | float):
        return dt.datetime.fromtimestamp(at, dt.UTC)
    try:
        when = dt.datetime.fromisoformat(str(at))
    except ValueError:  # a line written by hand without a time
        return _EPOCH
    return when if when.utcoffset() is not None else when.replace(tzinfo=dt.UTC)
