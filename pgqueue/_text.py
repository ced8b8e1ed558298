"""Text PostgreSQL accepts: a leaf module, so the hot-path Job and the worker share it."""

from __future__ import annotations

__all__ = ["storable"]


def storable(text: str) -> str:
    """Text PostgreSQL accepts: NUL bytes and lone surrogates escaped.

    A handler's error message is arbitrary; one NUL in it would fail the whole flush, again
    on every retry, and stop the worker's results.
    """
    if "\x00" in text:
        text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text
