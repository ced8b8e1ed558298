"""assert_scheduled() and refute_scheduled(): what an application scheduled, with a diff when not.

See :mod:`pgqueue.testing`.
"""

from __future__ import annotations

import difflib

import orjson

from pgqueue._codec import decode, encode
from pgqueue._records import JobRecord
from pgqueue._scheduler import Scheduler

__all__ = ["assert_scheduled", "refute_scheduled"]


def _matches(record: JobRecord, type_: str | None, params: object, queue: str | None) -> bool:
    if type_ is not None and record.type != type_:
        return False
    if queue is not None and record.queue != queue:
        return False
    return params is None or _params_match(record.params, params)


def _params_match(stored: object, wanted: object) -> bool:
    """A dict matches when every key given has that value (a subset); anything else: equal."""
    wanted = decode(encode(wanted))  # compare as stored: tuples are lists, datetimes strings
    if isinstance(wanted, dict) and isinstance(stored, dict):
        return all(k in stored and stored[k] == v for k, v in wanted.items())
    return stored == wanted


async def _live(scheduler: Scheduler) -> list[JobRecord]:
    out: list[JobRecord] = []
    cursor: str | None = None
    while True:
        page = await scheduler.list_jobs(limit=500, cursor=cursor)
        out += [r for r in page.items if not r.state.finished]
        if page.cursor is None:
            return out
        cursor = page.cursor


def _pretty(value: object) -> list[str]:
    return orjson.dumps(value, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode().splitlines()


def _describe(what: dict[str, object]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in what.items() if v is not None) or "any job"


def _report(live: list[JobRecord], type_: str | None, params: object) -> str:
    lines = [f"scheduled jobs ({len(live)}):"]
    lines += [f"  #{r.id} {r.type} queue={r.queue} {r.state.value} params={r.params!r}" for r in live[:20]]
    if len(live) > 20:  # noqa: PLR2004 - enough to read
        lines.append(f"  … and {len(live) - 20} more")
    same_type = [r for r in live if type_ is None or r.type == type_]
    if params is not None and same_type:
        closest = same_type[0]
        lines.append(
            f"params of #{closest.id} ({closest.type}) against the expected (- expected, + scheduled):"
        )
        diff = difflib.ndiff(_pretty(decode(encode(params))), _pretty(closest.params))
        lines += [f"  {d}" for d in diff if not d.startswith("?")]
    return "\n".join(lines)


async def assert_scheduled(
    scheduler: Scheduler,
    *,
    type: str | None = None,  # noqa: A002 - the job type's name, as in schedule()
    params: object = None,
    queue: str | None = None,
    count: int | None = None,
) -> list[JobRecord]:
    """Assert that live (not yet finished) jobs match; return them.

    ``params``: a dict matches jobs whose params hold those keys with those values (other
    keys are ignored); any other value must equal the params. ``count``: exactly that many
    (default: at least one). Raises AssertionError listing the scheduled jobs and, with
    ``params``, a diff against the closest job of the type.
    """
    live = await _live(scheduler)
    found = [r for r in live if _matches(r, type, params, queue)]
    if (count is None and found) or (count is not None and len(found) == count):
        return found
    want = f"{count}" if count is not None else "at least 1"
    what = _describe({"type": type, "params": params, "queue": queue})
    raise AssertionError(
        f"expected {want} scheduled job(s) matching {what}; found {len(found)}\n{_report(live, type, params)}"
    )


async def refute_scheduled(
    scheduler: Scheduler,
    *,
    type: str | None = None,  # noqa: A002
    params: object = None,
    queue: str | None = None,
) -> None:
    """Assert that no live job matches (same matching as :func:`assert_scheduled`)."""
    live = await _live(scheduler)
    found = [r for r in live if _matches(r, type, params, queue)]
    if found:
        what = _describe({"type": type, "params": params, "queue": queue})
        listed = "\n".join(
            f"  #{r.id} {r.type} queue={r.queue} {r.state.value} params={r.params!r}" for r in found
        )
        raise AssertionError(f"expected no scheduled job matching {what}; found {len(found)}:\n{listed}")
