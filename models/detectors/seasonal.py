"""SeasonalZScore: surprise against a daily-seasonal forecast, with a refractory period after each alarm."""

from __future__ import annotations

import math

from models.detectors._kernel import SeasonalForecast, register

__all__ = ["SeasonalZScore"]

_sqrt = math.sqrt
_floor = math.floor


@register
class SeasonalZScore(SeasonalForecast):
    """Surprise against a daily-seasonal baseline, with a refractory period after each alarm.

    Two forecasters run side by side on every series (see
    :class:`~models.detectors._kernel.SeasonalForecast`): a flat exponentially
    weighted level, and a level plus a time-of-day profile of ``bins`` buckets
    over ``period`` seconds.  The one that has been more accurate lately
    judges each sample, so a series without a daily cycle is judged by the
    flat model and one with a cycle is not flagged every morning.  The score
    is the absolute forecast error over the judging model's error scale, in
    forecast standard deviations (6 means a 6-sigma surprise), not capped.

    NAB-style alarm hygiene: once a sample scores at least ``alarm``, the
    next ``refractory`` samples have their score multiplied by
    ``refractory_factor``.  One incident then raises one alarm at its start,
    not a burst, while the baseline keeps learning, so a level shift is
    adopted (after about ``1/alpha`` samples) before the refractory period
    ends.  Anomalous samples teach the baseline only at rate ``alpha`` and
    only up to ``clip`` error scales.

    Counters should be fed as rates (deltas over the interval), as the streams
    do: a reset is then one hugely negative sample that scores high once and
    moves the baseline by only ``alpha`` of its size.

    Parameters
    ----------
    alpha
        Weight of the newest sample in the level and error estimates; the
        memory is ``1/alpha`` samples (0.003: about a day at 5-minute
        samples, 80 minutes at a 15-second scrape).
    beta
        Weight of the newest sample in its time-of-day bucket.
    bins
        Buckets in the seasonal profile (24: hourly buckets of a day).
    period
        Length of the season in seconds (86400: daily).
    season_gain
        The seasonal model judges samples only when its mean squared error is
        below this fraction of the flat model's.
    clip
        Errors are winsorised at this many error scales before they update the
        models (bounded influence of glitches; 20 leaves ordinary anomalies
        untouched).
    warmup
        Samples scored 0 while the estimates settle.
    rel_floor
        Floor of the error scale, relative to the series' typical magnitude.
    resolution
        Floor of the error scale in the series' own unit (0: none).
    alarm
        Score at which an alarm starts a refractory period.
    refractory
        Samples after an alarm whose score is damped.
    refractory_factor
        Multiplier of scores inside the refractory period (0 silences them).
    feature
        Key of the value in ``x``.

    Examples
    --------
    A series with a daily cycle sampled every 5 minutes; a value that would
    be normal at noon is anomalous at midnight:

    >>> import math
    >>> det = SeasonalZScore()
    >>> def sample(i):
    ...     t = i * 300.0
    ...     return {"value": 50 + 30 * math.sin(2 * math.pi * t / 86400) + (i % 3)}, t
    >>> scores = []
    >>> for i in range(288 * 5):
    ...     x, t = sample(i)
    ...     scores.append(det.score_one(x, t=t))
    ...     det.learn_one(x, t=t)
    >>> max(scores[288 * 4:]) < 4           # the cycle itself is not anomalous
    True
    >>> t = 288 * 5 * 300.0                 # midnight; the cycle expects about 50 here
    >>> det.score_one({"value": 80.0}, t=t) > 6
    True
    >>> round(det.baseline)              # what it expected at 23:55, the last sample
    48
    >>> det.name, det.params()["bins"], len(det.to_bytes())
    ('seasonal_z', 24, 253)
    """

    name = "seasonal_z"
    TAG = 2
    _PARAMS = SeasonalForecast._FORECAST + ("alarm", "refractory", "refractory_factor", "feature")
    _PARAM_FMT = SeasonalForecast._FORECAST_FMT + "dqd"

    def __init__(
        self,
        alpha: float = 0.003,
        beta: float = 0.1,
        bins: int = 24,
        period: float = 86400.0,
        season_gain: float = 0.8,
        clip: float = 20.0,
        warmup: int = 30,
        rel_floor: float = 1e-3,
        resolution: float = 0.0,
        alarm: float = 6.0,
        refractory: int = 400,
        refractory_factor: float = 0.0,
        feature: str = "value",
    ) -> None:
        self._init_forecast(alpha, beta, bins, period, season_gain, clip, warmup, rel_floor, resolution, feature)
        self.alarm = alarm
        self.refractory = refractory
        self.refractory_factor = refractory_factor
        self._quiet = 0  # samples left in the refractory period

    def score_one(self, x: dict, t: float | None = None) -> float:
        if self._n < self.warmup:
            return 0.0
        try:
            v = x[self.feature]
        except KeyError:
            return 0.0
        # v - v is nan for inf and nan: one test for "not a finite number".
        if v is None or v - v != 0.0:
            return 0.0
        if t is None:
            t = x.get("t")
        floor = self.rel_floor * self._scale + self._abs_floor
        if t is not None and self._season_var < self.season_gain * self._flat_var:
            period = self.period
            z = abs(v - self._level - self._season[_floor((t % period) * self.bins / period)]) / (
                _sqrt(self._season_var) + floor)
        else:
            z = abs(v - self._flat) / (_sqrt(self._flat_var) + floor)
        return z * self.refractory_factor if self._quiet else z

    def learn_one(self, x: dict, t: float | None = None) -> None:
        try:
            v = x[self.feature]
        except KeyError:
            return
        if v is None or v - v != 0.0:
            return
        z = self._fit(v, x.get("t") if t is None else t)
        # The alarm bookkeeping uses the surprise on the pre-update state, so the
        # refractory period starts at the sample that was reported.
        if self._quiet:
            self._quiet -= 1
        elif self._n > self.warmup and z >= self.alarm:
            self._quiet = self.refractory

    def _state_fmt(self) -> str:
        return self._forecast_fmt() + "q"

    def _state(self) -> tuple:
        return (*self._forecast_state(), self._quiet)

    def _restore(self, values: tuple) -> None:
        used = self._restore_forecast(values)
        (self._quiet,) = values[used:]
