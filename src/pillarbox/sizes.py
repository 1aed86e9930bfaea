"""Sizes as people read them: the webmail's folder list and the quota warnings name the same
figure the same way."""

from __future__ import annotations


def human_size(size: int) -> str:
    """``size`` octets in B, KB, MB or GB (binary multiples, one decimal above bytes)."""
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
