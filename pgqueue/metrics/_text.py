"""The Prometheus text format (0.0.4), written as prometheus-client writes it, in a quarter of the time.

prometheus-client's ``generate_latest`` checks and escapes every label name of every
sample against its regular expressions, which makes it the largest share of a scrape
(about 7 µs per sample; pgqueue's families have about 80 samples). :func:`render` writes
the same bytes for the same registry (a test compares them), checking each distinct
metric and label name once per process, and escaping a label value only when it holds a
backslash, a quote or a newline. pgqueue's own families skip the objects altogether:
while :func:`render` collects, pgqueue's collector hands over their text (a
:class:`Prewritten`), written straight from its numbers.

Anything outside the plain case (a metric or label name that the legacy character set
does not allow, which prometheus-client would rewrite) makes :func:`render` hand the whole
registry to ``generate_latest``.
"""

from __future__ import annotations

import math
import re
from contextvars import ContextVar

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import CollectorRegistry
from prometheus_client.samples import Sample

__all__ = ["CONTENT_TYPE", "PREWRITTEN", "Prewritten", "go_float", "render"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED_LABEL = re.compile(r"^__.*$")
_GOOD_NAMES: set[str] = set()  # metric names checked once
_GOOD_LABELS: set[str] = set()  # label names checked once
_TYPES = {"info": "gauge", "stateset": "gauge", "gaugehistogram": "histogram", "unknown": "untyped"}
_INT_PLAIN = 1_000_000  # below this an integral value has no exponent in Go's notation
_OPENMETRICS_ONLY = ("_created", "_gsum", "_gcount")  # written as gauges of their own, after the family


PREWRITTEN: ContextVar[bool] = ContextVar("pgqueue_metrics_prewritten", default=False)
"""Set while :func:`render` collects: pgqueue's collector then answers with its text."""


class Prewritten(Metric):
    """Families already written in the text format (pgqueue's own, while :func:`render` collects)."""

    def __init__(self, text: str) -> None:
        super().__init__("pgqueue_prewritten", "", "untyped")
        self.text = text


class _Unusual(Exception):  # noqa: N818 - a signal to fall back, not an error
    """A name prometheus-client would rewrite: let it write the whole page."""


def go_float(value: float) -> str:
    """A sample value as Go (and prometheus-client's ``floatToGoString``) writes it."""
    if type(value) is int and -_INT_PLAIN < value < _INT_PLAIN:
        return f"{value}.0"  # most values are counts: the repr of their float, without the float
    d = float(value)
    if math.isinf(d):
        return "+Inf" if d > 0 else "-Inf"
    if math.isnan(d):
        return "NaN"
    s = repr(d)
    dot = s.find(".")
    if d > 0 and dot > 6:  # noqa: PLR2004 - Go switches to an exponent sooner than Python does
        mantissa = f"{s[0]}.{s[1:dot]}{s[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return s


def render(registry: CollectorRegistry) -> bytes:
    """Every family of ``registry`` in the text format: the bytes ``generate_latest`` returns."""
    try:
        return _render(registry)
    except _Unusual:
        return generate_latest(registry)


def _render(registry: CollectorRegistry) -> bytes:
    out: list[str] = []
    token = PREWRITTEN.set(True)
    try:
        metrics = list(registry.collect())
    finally:
        PREWRITTEN.reset(token)
    for metric in metrics:
        if isinstance(metric, Prewritten):
            out.append(metric.text)
            continue
        name, kind = metric.name, metric.type
        if kind == "counter":
            name += "_total"
        elif kind == "info":
            name += "_info"
        _check_name(name)
        doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
        out.append(f"# HELP {name} {doc}\n# TYPE {name} {_TYPES.get(kind, kind)}\n")
        later: dict[str, list[str]] = {}
        special = {metric.name + suffix: suffix for suffix in _OPENMETRICS_ONLY}
        for s in metric.samples:
            suffix = special.get(s.name)
            if suffix is None:
                out.append(_line(s))
            else:
                later.setdefault(suffix, []).append(_line(s))
        for suffix, lines in sorted(later.items()):
            gauge = metric.name + suffix
            _check_name(gauge)
            out.append(f"# HELP {gauge} {doc}\n# TYPE {gauge} gauge\n")
            out.extend(lines)
    return "".join(out).encode("utf-8")


def _line(s: Sample) -> str:
    name = s.name
    _check_name(name)
    labels = ""
    if s.labels:
        parts = []
        for key, raw in sorted(s.labels.items()):
            if key not in _GOOD_LABELS:
                if not _LABEL_NAME.match(key) or _RESERVED_LABEL.match(key):
                    raise _Unusual(key)
                _GOOD_LABELS.add(key)
            value = raw
            if "\\" in value or "\n" in value or '"' in value:
                value = value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")
            parts.append(f'{key}="{value}"')
        labels = "{" + ",".join(parts) + "}"
    stamp = "" if s.timestamp is None else f" {int(float(s.timestamp) * 1000):d}"
    return f"{name}{labels} {go_float(s.value)}{stamp}\n"


def _check_name(name: str) -> None:
    if name not in _GOOD_NAMES:
        if not _METRIC_NAME.match(name):
            raise _Unusual(name)
        _GOOD_NAMES.add(name)
