"""Server-drawn SVG charts: the axis rounding and where each value is drawn."""

from __future__ import annotations

import re

import pytest

from pillarbox.web.charts import Series, axis_top, line_chart


@pytest.mark.parametrize(
    ("peak", "expected"),
    [(0, (1, 1)), (1, (1, 1)), (3, (3, 1)), (4, (4, 1)), (7, (8, 2)), (19, (20, 5)),
     (130, (150, 50)), (999, (1000, 500))],
)  # fmt: skip
def test_axis_top_is_a_1_2_5_step(peak: int, expected: tuple[int, int]) -> None:
    assert axis_top(peak) == expected


def test_points_are_drawn_at_their_values() -> None:
    svg = line_chart(
        ["a", "b", "<c>"],
        [Series("delivered", "delivered", (0, 2, 4)), Series("junk", "spam & co", (1, 0, 0))],
        title="Mail",
    )
    # Plot area: x 44..708, y 12 (axis top, 4) .. 192 (zero).
    assert '<polyline fill="none" points="44.0,192.0 376.0,102.0 708.0,12.0"/>' in svg
    assert '<polyline fill="none" points="44.0,147.0 376.0,192.0 708.0,192.0"/>' in svg
    assert '<circle cx="708.0" cy="12.0" r="2.5"><title>&lt;c&gt; — delivered: 4</title>' in svg
    assert "<title>a — spam &amp; co: 1</title>" in svg
    assert re.findall(r'class="y-label"[^>]*>(\d+)<', svg) == ["0", "1", "2", "3", "4"]
    assert "<script" not in svg and "style=" not in svg


def test_empty_chart_still_has_an_axis() -> None:
    svg = line_chart(["only"], [Series("sent", "sent", (0,))], title="Nothing")
    assert re.findall(r'class="y-label"[^>]*>(\d+)<', svg) == ["0", "1"]
    assert 'points="44.0,192.0"' in svg
