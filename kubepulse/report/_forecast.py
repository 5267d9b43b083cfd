"""When a series of hourly values reaches a limit: a trend with a daily profile, fitted by least squares, with an interval.

The model, per series (hours ``t`` in days, 0 at the newest hour)::

    y(t) = a + b*t + sum_k (c_k sin(2 pi k t) + d_k cos(2 pi k t))        k = 1..3   ("linear")
    log y(t) = the same                                                              ("exponential")

Three harmonics of the day give a daily profile (a peak in the afternoon, a trough at night) without
a parameter per hour; hours missing from the history are simply absent rows, so gaps need no filling.
Both trends are fitted and the one with the smaller squared error on the original scale is kept (the
same number of parameters, so that is also the better AIC): steady growth in percent per day (traffic,
a namespace's workloads) is exponential and a linear line would put its fill date too late, while a
disk filling by so many bytes an hour is linear and an exponential would put it too early.

The limit is reached when the *daily peak* reaches it: the trend plus the profile's highest point.
The interval comes from the uncertainty of the trend's level and slope, with Newey-West (HAC)
standard errors over a day of lags, because hourly deviations from the fit are correlated (a busy
hour is followed by a busy hour) and plain least-squares errors would be far too narrow. The early
end of the interval is when the upper band of the peak reaches the limit, the late end when the
lower band does (None when that is beyond the horizon: the data cannot rule out that it never does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

__all__ = ["Forecast", "forecast", "MIN_HOURS", "HARMONICS"]

HARMONICS = 3
"""Harmonics of the daily cycle: enough for a peak narrower than half a day, few enough for two days of data."""
MIN_HOURS = 48
"""Fewer hourly points than two days cannot tell a trend from the daily cycle: no forecast (``flat``)."""
_HAC_LAGS = 24
"""Newey-West lags: a day of hours, the span over which hourly deviations are correlated."""


@dataclass(frozen=True, slots=True)
class Forecast:
    """What :func:`forecast` found: the trend, the days until the limit and their interval (days from the newest hour)."""

    model: str
    """``linear``, ``exponential``, or ``flat`` (too little history for a trend: growth 0)."""
    growth_per_day: float
    """The trend's change per day at the newest hour, in the series' unit."""
    peak_now: float
    """The fitted daily peak at the newest hour."""
    days_to_full: float | None
    days_to_full_low: float | None
    days_to_full_high: float | None


def _design(t: np.ndarray) -> np.ndarray:
    cols = [np.ones_like(t), t]
    for k in range(1, HARMONICS + 1):
        cols += [np.sin(2 * math.pi * k * t), np.cos(2 * math.pi * k * t)]
    return np.column_stack(cols)


def _hac(x: np.ndarray, resid: np.ndarray) -> np.ndarray:
    """Newey-West covariance of least-squares coefficients (Bartlett weights, :data:`_HAC_LAGS` lags)."""
    n = len(resid)
    xe = x * resid[:, None]
    s = xe.T @ xe
    for lag in range(1, min(_HAC_LAGS, n - 1) + 1):
        w = 1.0 - lag / (_HAC_LAGS + 1)
        g = xe[lag:].T @ xe[:-lag]
        s += w * (g + g.T)
    bread = np.linalg.pinv(x.T @ x)
    return bread @ s @ bread


def _profile_max(beta: np.ndarray) -> float:
    """The highest point of the fitted daily profile (the harmonics' sum), on a 5-minute grid of one day."""
    phase = np.linspace(0.0, 1.0, 288, endpoint=False)
    return float((_design(phase)[:, 2:] @ beta[2:]).max())


def _first_reach(curve: np.ndarray, limit: float, grid: np.ndarray) -> float | None:
    """The first time ``curve`` reaches ``limit``, interpolated between the hours of ``grid`` (None: not on it)."""
    hit = np.flatnonzero(curve >= limit)
    if not hit.size:
        return None
    i = int(hit[0])
    if i == 0:
        return 0.0
    c0, c1 = float(curve[i - 1]), float(curve[i])
    return float(grid[i - 1] + (grid[i] - grid[i - 1]) * (limit - c0) / (c1 - c0))


def forecast(
    hours: np.ndarray,
    values: np.ndarray,
    limit: float | None,
    *,
    interval: float = 0.8,
    horizon_days: float = 365.0,
) -> Forecast:
    """Fit ``values`` (hourly means at ``hours``, epoch seconds of each hour's start) and find when their daily peak reaches ``limit``.

    >>> t = np.arange(14 * 24) * 3600.0
    >>> days = (t - t[-1]) / 86400
    >>> y = 100 * 1.02 ** days * (1 + 0.1 * np.cos(2 * np.pi * days))   # 2 %/day, a daily cycle of +-10 %
    >>> f = forecast(t, y, limit=100 * 1.1 * 1.02 ** 20)
    >>> f.model, round(f.days_to_full, 1), f.days_to_full_low <= f.days_to_full <= f.days_to_full_high
    ('exponential', 20.0, True)
    >>> forecast(t, np.full(t.size, 5.0), limit=10.0).days_to_full is None   # flat: never
    True
    """
    t = (np.asarray(hours, dtype=float) - float(hours[-1])) / 86400.0
    y = np.asarray(values, dtype=float)
    z = float(norm.ppf(0.5 + interval / 2))
    if len(y) < MIN_HOURS or t[-1] - t[0] < 2.0 - 1e-9:
        peak = float(y.max())
        full = 0.0 if limit is not None and peak >= limit else None
        return Forecast("flat", 0.0, peak, full, full, full)
    x = _design(t)
    fits = []
    lin, *_ = np.linalg.lstsq(x, y, rcond=None)
    fits.append(("linear", lin, float(((y - x @ lin) ** 2).sum())))
    if (y > 0).all():
        logy = np.log(y)
        exp_, *_ = np.linalg.lstsq(x, logy, rcond=None)
        fits.append(("exponential", exp_, float(((y - np.exp(x @ exp_)) ** 2).sum())))
    # Ties (a constant series fits both exactly) go to the linear trend, the one that extrapolates least.
    model, beta, _ = min(fits, key=lambda f: f[2] * (1.0 + 1e-9 * (f[0] != "linear")))
    target = y if model == "linear" else np.log(y)
    cov = _hac(x, target - x @ beta)
    a, b = float(beta[0]), float(beta[1])
    var_a, var_b, cov_ab = float(cov[0, 0]), float(cov[1, 1]), float(cov[0, 1])
    smax = _profile_max(beta)
    back = (lambda v: v) if model == "linear" else np.exp
    peak_now = float(back(a + smax))
    growth = b if model == "linear" else b * math.exp(a)
    if limit is None or (model == "exponential" and limit <= 0):
        return Forecast(model, growth, peak_now, None, None, None)
    lim = limit if model == "linear" else math.log(limit)
    grid = np.arange(0.0, horizon_days + 1e-9, 1.0 / 24)
    mean = a + smax + b * grid
    se = np.sqrt(np.maximum(var_a + grid**2 * var_b + 2 * grid * cov_ab, 0.0))
    if a + smax >= lim:
        return Forecast(model, growth, peak_now, 0.0, 0.0, 0.0)
    point = (lim - a - smax) / b if b > 0 else None
    if point is not None and point > horizon_days:
        point = None
    return Forecast(model, growth, peak_now, point, _first_reach(mean + z * se, lim, grid), _first_reach(mean - z * se, lim, grid))
