"""Online linear trend: exponentially weighted least squares in O(1) state.

Predicting exhaustion ("disk full in < 4 h", "OOM in < 1 h") needs a slope
that ignores noise. A sliding-window regression would keep every point of the
window per series (a 6 h window of 15 s scrapes is 1,440 points, times every
container, in a changelogged table); instead each point's weight decays as
``exp(-age / tau)`` and only six weighted sums are kept. With ``tau =
window / 2`` the mean age of the data matches a sliding window of ``window``.

Times are stored relative to the newest point and values relative to the
first, so the sums stay small and the variance does not vanish in rounding
when a 1 TB volume grows by megabytes.

The fit is trusted only with ``min_points`` points spanning ``min_span``
seconds and an R² of at least ``min_r2``: a flat noisy series has R² near 0
and predicts nothing.
"""

from __future__ import annotations

import math

__all__ = ["update", "fit", "time_to_reach"]



def update(state: list[float] | None, t: float, y: float, *, tau: float, window: float) -> list[float]:
    """Fold point ``(t, y)`` in; a gap longer than ``window`` starts afresh.

    >>> s = None
    >>> for i in range(10):
    ...     s = update(s, 60.0 * i, 100.0 + 2.0 * i, tau=1800, window=3600)
    >>> round(fit(s, min_points=5, min_span=0, min_r2=0.9)[0] * 60, 6)  # slope per minute
    2.0
    """
    if state is None or t - state[9] > window:
        return [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, y, 1.0, t, t]
    w, st, sy, stt, sty, syy, y0, n, first_t, last_t = state
    dt = t - last_t
    if dt > 0:
        f = math.exp(-dt / tau)
        w *= f
        st *= f
        sy *= f
        stt *= f
        sty *= f
        syy *= f
        # Move the time origin to the new point: old times become t - dt.
        stt = stt - 2.0 * dt * st + dt * dt * w
        sty = sty - dt * sy
        st = st - dt * w
    yy = y - y0
    # The new point sits at time 0, so it adds nothing to st, stt or sty.
    return [w + 1.0, st, sy + yy, stt, sty, syy + yy * yy, y0, n + 1.0, first_t, t]


def fit(state: list[float], *, min_points: int, min_span: float, min_r2: float) -> tuple[float, float, float] | None:
    """``(slope per s, fitted value now, r2)``, or None while there is too little data.

    A fit below ``min_r2`` returns slope 0: the series is not trending, which
    is an answer ("not running out"), unlike too little data (None).
    """
    w, st, sy, stt, sty, syy, y0, n, first_t, last_t = state
    if n < min_points or last_t - first_t < min_span or w <= 0:
        return None
    mt = st / w
    my = sy / w
    var_t = stt / w - mt * mt
    var_y = syy / w - my * my
    if var_t <= 0:
        return None
    cov = sty / w - mt * my
    slope = cov / var_t
    now = y0 + my - slope * mt  # the fitted line at time 0 (the newest point)
    if var_y <= 0:
        return 0.0, now, 1.0
    r2 = min(1.0, cov * cov / (var_t * var_y))
    if r2 < min_r2:
        return 0.0, now, r2
    return slope, now, r2


def time_to_reach(slope: float, now: float, limit: float) -> float:
    """Seconds until the fitted line reaches ``limit``: 0 when there, inf when not heading there.

    >>> time_to_reach(2.0, 90.0, 100.0), time_to_reach(-1.0, 90.0, 100.0), time_to_reach(1.0, 120.0, 100.0)
    (5.0, inf, 0.0)
    """
    if now >= limit:
        return 0.0
    if slope <= 0:
        return math.inf
    return (limit - now) / slope
