"""Charts drawn on the server as inline SVG: no script, no chart library, nothing fetched.

A line chart of a few integer series over labelled intervals, with a y axis rounded to a
1-2-5 step, one ``<polyline>`` per series and a ``<circle>`` per point whose ``<title>`` names
the interval, the series and the value (a tooltip, and what a screen reader reads). Colours come
from CSS classes (``series-<key>``), so the page's stylesheet decides them; the page CSP
(``style-src 'self'``) allows no inline styles anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

from markupsafe import Markup


@dataclass(frozen=True, slots=True)
class Series:
    #: Short CSS-safe name (``delivered``), shown as written in tooltips and the legend.
    key: str
    label: str
    values: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Frame:
    """Where the plot area lies in the SVG's coordinates."""

    width: int = 720
    height: int = 220
    left: int = 44
    right: int = 12
    top: int = 12
    bottom: int = 28

    @property
    def plot_width(self) -> int:
        return self.width - self.left - self.right

    @property
    def plot_height(self) -> int:
        return self.height - self.top - self.bottom


def axis_top(peak: int, ticks: int = 4) -> tuple[int, int]:
    """(axis maximum, tick step): the smallest 1-2-5 step whose ``ticks`` steps reach
    ``peak`` (at least 1, so an empty chart still has an axis)."""
    peak = max(peak, 1)
    magnitude = 10 ** math.floor(math.log10(peak / ticks)) if peak > ticks else 1
    for factor in (1, 2, 5, 10):
        step = factor * magnitude
        if step * ticks >= peak:
            return step * math.ceil(peak / step), step
    raise AssertionError("unreachable: 10 × magnitude always reaches the peak")


def line_chart(
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    title: str,
    label_every: int = 1,
    frame: Frame = Frame(),
) -> Markup:
    """The SVG of ``series`` over ``labels`` (one value per label in each series)."""
    count = len(labels)
    top, step = axis_top(max((max(s.values, default=0) for s in series), default=0))

    def x(index: int) -> float:
        return frame.left + (frame.plot_width * index / (count - 1) if count > 1 else 0)

    def y(value: int) -> float:
        return frame.top + frame.plot_height * (1 - value / top)

    parts = [
        f'<svg class="chart" viewBox="0 0 {frame.width} {frame.height}" role="img" '
        f'aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for tick in range(0, top + 1, step):
        parts.append(
            f'<line class="grid" x1="{frame.left}" x2="{frame.width - frame.right}" '
            f'y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
            f'<text class="y-label" x="{frame.left - 6}" y="{y(tick) + 4:.1f}" '
            f'text-anchor="end">{tick}</text>'
        )
    baseline = frame.top + frame.plot_height
    for index in range(0, count, max(1, label_every)):
        parts.append(
            f'<text class="x-label" x="{x(index):.1f}" y="{baseline + 18}" '
            f'text-anchor="middle">{escape(labels[index])}</text>'
        )
    for line in series:
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(line.values))
        parts.append(f'<g class="series series-{escape(line.key)}">')
        parts.append(f'<polyline fill="none" points="{points}"/>')
        for index, value in enumerate(line.values):
            parts.append(
                f'<circle cx="{x(index):.1f}" cy="{y(value):.1f}" r="2.5">'
                f"<title>{escape(labels[index])} — {escape(line.label)}: {value}</title></circle>"
            )
        parts.append("</g>")
    parts.append("</svg>")
    return Markup("".join(parts))
