"""Server-rendered SVG bar charts for the dashboard: no JavaScript, no chart library.

A chart is a title, a y axis with a few round ticks, one stacked bar per time bucket and
time labels under the x axis. The scale is linear from zero so a spike stands out by its
height alone; a non-zero bucket is at least ``_MIN_BAR`` pixels tall so a single failure
among thousands of successes still shows. Each bar carries an SVG ``<title>``: hovering it
shows the bucket's time and counts, a native tooltip that needs no script (the CSP allows
none inline).

Every text that reaches the markup goes through :func:`markupsafe.escape`; the result is a
:class:`~markupsafe.Markup` so Jinja2 inserts it as is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Sequence

from markupsafe import Markup, escape

__all__ = ["Series", "bar_chart", "bucket_words", "nice_ticks"]

WIDTH = 600  # viewBox units; the SVG scales to its container's width (about this wide)
HEIGHT = 240
# Plot margins: the y labels; the newest x label's overhang; the title and legend; the x labels.
_LEFT, _RIGHT, _TOP, _BOTTOM = 50, 24, 56, 40
_MIN_BAR = 2.0  # a non-zero count is never thinner than this (one failure must be visible)
_TICKS = 4  # about this many y gridlines above zero
_X_LABELS = 6  # about this many time labels under the axis
_AXIS = "#6b7280"
_GRID = "#e5e7eb"


@dataclasses.dataclass(frozen=True, slots=True)
class Series:
    """One stacked layer of a bar chart."""

    label: str
    """Its name in the legend and in the tooltips."""
    colour: str
    """Its fill, a CSS colour (written into a ``fill`` attribute, escaped)."""
    values: Sequence[int]
    """One count per bucket, oldest first."""


def nice_ticks(peak: int) -> tuple[int, int]:
    """The y axis for counts up to ``peak``: (step, top), the step 1, 2 or 5 × 10ⁿ.

    ``top`` is a multiple of ``step`` at or above ``peak``, so gridlines fall on round
    numbers; an empty chart gets the axis 0..1.
    """
    if peak <= 0:
        return 1, 1
    raw = peak / _TICKS
    magnitude = 10 ** max(0, math.floor(math.log10(raw))) if raw >= 1 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    return step, step * math.ceil(peak / step)


def _time_label(at: dt.datetime, *, seconds: bool, dated: bool) -> str:
    fmt = "%H:%M:%S" if seconds else "%H:%M"
    return at.astimezone(dt.UTC).strftime(("%m-%d " if dated else "") + fmt)


def bar_chart(
    *,
    chart_id: str,
    title: str,
    starts: Sequence[dt.datetime],
    bucket_s: float,
    series: Sequence[Series],
    y_label: str,
) -> Markup:
    """An SVG of stacked bars, one per bucket (``starts``: each bucket's start, oldest first).

    ``chart_id`` makes the element ids unique on a page holding several charts.
    """
    n = len(starts)
    totals = [sum(s.values[i] for s in series) for i in range(n)]
    step, top = nice_ticks(max(totals, default=0))
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    base = _TOP + plot_h
    cid = escape(chart_id)
    out: list[str] = [
        (
            f'<svg class="chart" id="{cid}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img"'
            f' aria-labelledby="{cid}-title" xmlns="http://www.w3.org/2000/svg"'
            ' preserveAspectRatio="xMidYMid meet">'
        ),
        f'<title id="{cid}-title">{escape(title)}</title>',
        (
            f'<text x="{_LEFT}" y="20" class="chart-title" font-size="15" font-weight="600"'
            f' fill="#111827">{escape(title)}</text>'
        ),
    ]
    out += _y_axis(step, top, plot_w, plot_h, y_label)
    out += _legend(series)
    out += _bars(starts, bucket_s, series, totals=totals, top=top)
    out.append(
        f'<line x1="{_LEFT}" y1="{base}" x2="{_LEFT + plot_w}" y2="{base}"'
        f' stroke="{_AXIS}" stroke-width="1"/>'
    )
    out += _x_labels(starts, bucket_s, plot_w)
    if not any(totals):
        out.append(
            f'<text x="{_LEFT + plot_w / 2:.1f}" y="{_TOP + plot_h / 2:.1f}" text-anchor="middle"'
            f' font-size="13" fill="{_AXIS}">no runs in this window</text>'
        )
    out.append("</svg>")
    return Markup("".join(out))  # noqa: S704 - every interpolated text above is escaped


def _y_axis(step: int, top: int, plot_w: int, plot_h: int, y_label: str) -> list[str]:
    out: list[str] = []
    for value in range(0, top + 1, step):
        y = _TOP + plot_h - plot_h * value / top
        colour = _AXIS if value == 0 else _GRID
        out.append(
            f'<line x1="{_LEFT}" y1="{y:.1f}" x2="{_LEFT + plot_w}" y2="{y:.1f}" stroke="{colour}"'
            ' stroke-width="1"/>'
        )
        out.append(
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" font-size="12"'
            f' fill="{_AXIS}">{value}</text>'
        )
    mid = _TOP + plot_h / 2
    out.append(
        f'<text x="12" y="{mid:.1f}" transform="rotate(-90 12 {mid:.1f})" text-anchor="middle"'
        f' font-size="12" fill="{_AXIS}">{escape(y_label)}</text>'
    )
    return out


def _legend(series: Sequence[Series]) -> list[str]:
    """A row under the title: a swatch, the name and the window's total per series."""
    out: list[str] = []
    x = float(_LEFT)
    for s in series:
        text = f"{s.label} {sum(s.values)}"
        out.append(
            f'<rect x="{x:.0f}" y="31" width="11" height="11" fill="{escape(s.colour)}"/>'
            f'<text x="{x + 15:.0f}" y="41" font-size="12" fill="#374151">{escape(text)}</text>'
        )
        x += 7 * len(text) + 32  # an estimate of the text's width at 12px: enough to space items
    return out


def _bars(
    starts: Sequence[dt.datetime],
    bucket_s: float,
    series: Sequence[Series],
    *,
    totals: Sequence[int],
    top: int,
) -> list[str]:
    plot_w, plot_h = WIDTH - _LEFT - _RIGHT, HEIGHT - _TOP - _BOTTOM
    n = len(starts)
    if not n:
        return []
    width = plot_w / n
    gap = 1.0 if width > 4 else 0.0  # noqa: PLR2004 - thin bars touch rather than vanish
    seconds = bucket_s < 60  # noqa: PLR2004 - sub-minute buckets need seconds in their labels
    out: list[str] = []
    for i, start in enumerate(starts):
        if not totals[i]:
            continue
        x = _LEFT + i * width
        when = _time_label(start, seconds=seconds, dated=False)
        counts = ", ".join(f"{s.label} {s.values[i]}" for s in series if s.values[i])
        out.append(f"<g><title>{escape(when)} UTC: {escape(counts)}</title>")
        y = float(_TOP + plot_h)
        for s in series:
            value = s.values[i]
            if not value:
                continue
            h = max(_MIN_BAR, plot_h * value / top)
            y -= h
            out.append(
                f'<rect class="bar" x="{x + gap / 2:.2f}" y="{y:.2f}" width="{width - gap:.2f}"'
                f' height="{h:.2f}" fill="{escape(s.colour)}"/>'
            )
        out.append("</g>")
    return out


def _x_labels(starts: Sequence[dt.datetime], bucket_s: float, plot_w: int) -> list[str]:
    n = len(starts)
    if not n:
        return []
    width = plot_w / n
    every = max(1, math.ceil(n / _X_LABELS))
    seconds = bucket_s < 60  # noqa: PLR2004 - as in the tooltips
    dated = (starts[-1] - starts[0]).total_seconds() >= 86400  # noqa: PLR2004 - a day
    base = HEIGHT - _BOTTOM
    out: list[str] = []
    # Counted back from the newest bucket, so "now" always has a label.
    for i in range(n - 1, -1, -every):
        x = _LEFT + i * width + width / 2
        label = _time_label(starts[i], seconds=seconds, dated=dated)
        out.append(
            f'<line x1="{x:.1f}" y1="{base}" x2="{x:.1f}" y2="{base + 4}" stroke="{_AXIS}"/>'
            f'<text x="{x:.1f}" y="{base + 16}" text-anchor="middle" font-size="12"'
            f' fill="{_AXIS}">{escape(label)}</text>'
        )
    out.append(
        f'<text x="{_LEFT + plot_w / 2:.1f}" y="{HEIGHT - 4}" text-anchor="middle" font-size="12"'
        f' fill="{_AXIS}">time (UTC), one bar per {escape(bucket_words(bucket_s))}</text>'
    )
    return out


def bucket_words(bucket_s: float) -> str:
    """A bucket's length in words: ``minute``, ``5 minutes``, ``hour``, ``30 s``."""
    if bucket_s % 3600 == 0:
        hours = int(bucket_s // 3600)
        return "hour" if hours == 1 else f"{hours} hours"
    if bucket_s % 60 == 0:
        minutes = int(bucket_s // 60)
        return "minute" if minutes == 1 else f"{minutes} minutes"
    return f"{bucket_s:g} s"
