"""Reads a Prometheus duration (``30s``, ``5m``, ``1h30m``, ``250ms``) as seconds: the one grammar of rule files and the alerting config.

The two dialects differ in one thing: Alertmanager's configuration accepts a
decimal number of seconds (``0.25s``), Prometheus rule files do not. Each
caller says which it reads and keeps its own error message.
"""

from __future__ import annotations

import re

__all__ = ["duration_seconds"]

_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?(?:(\d+)ms)?$")
_UNITS = (365 * 86400, 7 * 86400, 86400, 3600, 60, 1, 0.001)


def duration_seconds(text: str, *, fractional_seconds: bool) -> float | None:
    """Seconds in ``text`` (surrounding blanks ignored), or None when it is not a duration.

    >>> duration_seconds("1h30m", fractional_seconds=False), duration_seconds("0.25s", fractional_seconds=True)
    (5400.0, 0.25)
    >>> duration_seconds("0.25s", fractional_seconds=False) is None, duration_seconds(" ", fractional_seconds=True) is None
    (True, True)
    """
    text = text.strip()
    m = _DURATION.match(text)
    # Only the seconds can hold a dot, so a dot anywhere means decimal seconds.
    if not text or not m or (not fractional_seconds and "." in text):
        return None
    # Whole units add up as integers (then one rounding), as Prometheus does; decimal seconds as floats.
    number = float if fractional_seconds else int
    return float(sum(number(g) * u for g, u in zip(m.groups(), _UNITS, strict=True) if g))
