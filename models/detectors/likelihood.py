"""SeasonalLikelihood: seasonal surprise judged against the series' own history of surprise (the default detector)."""

from __future__ import annotations

import math

from models.detectors._kernel import Detector, SeasonalForecast, register, steady_from

__all__ = ["SeasonalLikelihood"]

_sqrt = math.sqrt
_log1p = math.log1p
_floor = math.floor

# "No memo": a tuple shaped like the memo whose value is nan, which equals no sample,
# so learn_one needs no separate None test.
_NO_MEMO = (math.nan,) * 4


@register
class SeasonalLikelihood(SeasonalForecast):
    """Seasonal surprise, judged against the series' own history of surprise (an anomaly likelihood).

    One global threshold has to work for every series (NAB optimises one
    per detector over its whole corpus; the streams use
    ``anomaly_threshold``), yet a heavy-tailed count series produces 8-sigma
    forecast errors every day while a quiet gauge never does.  So the raw
    surprise is not the score; how unusual the *recent* surprise is for
    *this* series is, in the spirit of HTM's anomaly likelihood:

    1. ``z``: the surprise of the sample against the flat or time-of-day
       forecast, whichever has been more accurate
       (:class:`~models.detectors._kernel.SeasonalForecast`), in error scales.
    2. ``m``: an exponentially weighted mean of ``log1p(z)`` with weight
       ``short`` (about ``1/short`` samples).  The log keeps one glitch from
       dominating; the mean makes a sustained change (a level shift, a
       variance change, a burst) count more than one outlier.
    3. The score is ``(m - mu) / (sd + sd_floor)`` where ``mu`` and ``sd``
       are the long-run mean and deviation of ``m`` itself (weight
       ``long``).  Before the series has its own history these start from
       what Gaussian noise gives (``m`` averages 0.53, deviation 0.07) with
       a weight of ``prior_n`` samples, so a brand-new series can alarm
       after ``warmup`` samples.
    4. Alarm hygiene without a threshold: a score is reported only when it
       exceeds the running peak of earlier scores, which decays by ``decay``
       per sample (0.995: halves in about 140 samples).  One incident then
       reports its onset and any escalation, not every sample of it, whatever
       threshold the user picks; NAB credits only the earliest detection in a
       window and charges every later one outside it.

    The scale is standard deviations of the recent mean surprise, so it is
    comparable across series and across kinds of series: with the threshold
    chosen on the other categories of the NAB subset it transfers with little
    loss (``python bench/detector.py --cv``).  Constant series score 0 until
    they change.

    ``spike`` (off here, on in the streams) lets one sample far outside the
    forecast alarm at once: the score is then at least ``z / spike``.  On NAB
    it costs points, because isolated outliers of bursty series are mostly not
    incidents there; on a 15-second scrape the likelihood alone takes about 5
    scrapes to reach the streams threshold even for a jump of 100 error scales.

    Parameters
    ----------
    alpha, beta, bins, period, season_gain, clip, warmup, rel_floor, resolution
        The forecasters (see :class:`~models.detectors.SeasonalZScore`;
        ``alpha`` 0.002: a longer memory of level and error than the plain
        z-score, because the likelihood step already absorbs how noisy the
        series is).
    short
        Weight of the newest ``log1p(z)`` in the recent mean surprise.
    long
        Weight of the newest recent mean in its long-run mean and variance
        (0.002: about 500 samples, under two days at 5 minutes).
    decay
        Per-sample decay of the peak a new score must beat to be reported.
    sd_floor
        Added to the long-run deviation, so a series whose surprise never
        varies does not turn a tiny wobble into a high score.
    prior_n
        Weight, in samples, of the Gaussian-noise prior of ``mu`` and ``sd``.
    spike
        When positive, the score is at least ``z / spike``.
    feature
        Key of the value in ``x``.

    Examples
    --------
    A steady noisy series, then a level shift: the shift is reported at its
    start (rising while the evidence grows), and its continuation is not
    reported again.

    >>> import random
    >>> rng = random.Random(1)
    >>> det = SeasonalLikelihood()
    >>> scores = []
    >>> for i in range(3000):
    ...     v = 100 + rng.gauss(0, 1) + (15 if i >= 2000 else 0)
    ...     scores.append(det.score_one({"value": v}, t=i * 15.0))
    ...     det.learn_one({"value": v}, t=i * 15.0)
    >>> max(scores[:2000]) < 2.5                 # the noise itself stays under the threshold
    True
    >>> [round(s, 1) for s in scores[2000:2009]]  # the shift, at once
    [1.4, 3.0, 4.2, 5.1, 5.7, 6.1, 0.0, 0.0, 0.0]
    >>> max(scores[2006:2150])                   # and not again while it is being adopted
    0.0
    >>> det.name, det.params()["short"], len(det.to_bytes())
    ('seasonal_lik', 0.1, 285)
    """

    name = "seasonal_lik"
    TAG = 3
    _PARAMS = SeasonalForecast._FORECAST + ("short", "long", "decay", "sd_floor", "prior_n", "spike", "feature")
    _PARAM_FMT = SeasonalForecast._FORECAST_FMT + "ddddqd"

    # log1p(|z|) of standard Gaussian noise averages 0.535, and its mean with weight
    # 0.1 deviates by 0.073: the prior of a series that has no history of its own yet.
    _PRIOR_MEAN = 0.535
    _PRIOR_SD = 0.073

    def __init__(
        self,
        alpha: float = 0.002,
        beta: float = 0.1,
        bins: int = 24,
        period: float = 86400.0,
        season_gain: float = 0.8,
        clip: float = 20.0,
        warmup: int = 30,
        rel_floor: float = 1e-3,
        resolution: float = 0.0,
        short: float = 0.1,
        long: float = 0.002,
        decay: float = 0.995,
        sd_floor: float = 0.05,
        prior_n: int = 50,
        spike: float = 0.0,
        feature: str = "value",
    ) -> None:
        self._init_forecast(alpha, beta, bins, period, season_gain, clip, warmup, rel_floor, resolution, feature)
        self.short = short
        self.long = long
        self.decay = decay
        self.sd_floor = sd_floor
        self.prior_n = prior_n
        self.spike = spike
        self._derive_lik()
        self._m = self._mu = self._PRIOR_MEAN  # recent mean surprise; its long-run mean
        self._lvar = self._PRIOR_SD * self._PRIOR_SD  # and variance
        self._k = 0  # samples that updated mu and the variance
        self._peak = 0.0  # decaying peak of earlier scores
        self._memo = _NO_MEMO  # score_one's arithmetic, reused by learn_one (not state)

    def _derive_lik(self) -> None:
        """Like _derive_forecast: from this many updates on, the long-run rate is `long`."""
        long, prior_n = self.long, self.prior_n
        self._k_steady = steady_from(lambda k: 1.0 / (k + prior_n) < long, long, prior_n)

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
        # The forecasters' surprise inlined: this is the per-sample hot path (>= 300k/s a core).
        floor = self.rel_floor * self._scale + self._abs_floor
        if t is not None and self._season_var < self.season_gain * self._flat_var:
            period = self.period
            b = _floor((t % period) * self.bins / period)
            z = abs(v - self._level - self._season[b]) / (_sqrt(self._season_var) + floor)
        else:
            z = abs(v - self._flat) / (_sqrt(self._flat_var) + floor)
        m, s = self._surprise(z)
        # learn_one reuses this arithmetic when it gets the same sample next, as it should.
        self._memo = (v, t, m, s)
        return s if s > self._peak else 0.0

    def learn_one(self, x: dict, t: float | None = None) -> None:
        try:
            v = x[self.feature]
        except KeyError:
            return
        if t is None:
            t = x.get("t")
        # score_one then learn_one on the same sample is the protocol: reuse its arithmetic.
        # A memo is only made for a finite value after warm-up, so a match needs no other test
        # (and _NO_MEMO's value is nan, which matches nothing).
        mv, mt, m, s = self._memo
        if mv != v or mt != t:
            if v is None or v - v != 0.0:
                return
            if self._n < self.warmup:
                self._fit(v, t)
                return
            self.score_one(x, t)
            mv, mt, m, s = self._memo
        self._memo = _NO_MEMO
        self._fit(v, t)
        self._learn_surprise(m, s)

    def score_learn(self, v: float, t: float, above: float) -> float:
        # The streams' per-sample step: score_one, then _fit and learn_one's update, inlined into one
        # call with no dict, memo or return value of _fit in between (the same operations in the same
        # order, so the same bits: tests/unit/test_detectors.py compares it with the two calls).
        n = self._n
        warm = n >= self.warmup
        if v - v != 0.0 or not n:
            # Not a finite number (scores 0, learns nothing), or the first sample: the protocol's two calls.
            return Detector.score_learn(self, v, t, above)
        floor = self.rel_floor * self._scale + self._abs_floor
        flat_var = self._flat_var
        season_var = self._season_var
        period = self.period
        b = _floor((t % period) * self.bins / period)
        season = self._season
        level = self._level
        if warm:
            if season_var < self.season_gain * flat_var:
                z = abs(v - level - season[b]) / (_sqrt(season_var) + floor)
            else:
                z = abs(v - self._flat) / (_sqrt(flat_var) + floor)
            m, s = self._surprise(z)
            score = s if s > self._peak else 0.0
            if score > above:
                self._memo = (v, t, m, s)  # learn_one, after the caller read the baseline, reuses it
                return score
        else:  # warm-up: scores 0, learned by _fit alone
            score = 0.0
            if score > above:
                return score
        # SeasonalForecast._fit (n > 0, t given), without its return value.
        n += 1
        self._n = n
        alpha = self.alpha
        a = alpha if n >= self._n_steady else (1.0 / n if n * alpha < 1.0 else alpha)
        clip = self.clip
        d = v - self._flat
        lim = clip * (_sqrt(flat_var) + floor)
        c = d if -lim < d < lim else (lim if d > 0.0 else -lim)
        self._flat += a * c
        self._flat_var = (1.0 - a) * (flat_var + a * c * c)
        self._bin = b
        e = v - level - season[b]
        lim = clip * (_sqrt(season_var) + floor)
        c = e if -lim < e < lim else (lim if e > 0.0 else -lim)
        self._level = level + a * c
        season[b] += self.beta * c
        self._season_var = (1.0 - a) * (season_var + a * c * c)
        self._scale += a * (abs(v) - self._scale)
        if not warm:
            return score
        self._learn_surprise(m, s)
        return score

    def _surprise(self, z: float) -> tuple[float, float]:
        """The recent mean surprise with ``z`` in it, and its score before the peak test (no update)."""
        m = self._m
        m += self.short * (_log1p(z) - m)
        s = (m - self._mu) / (_sqrt(self._lvar) + self.sd_floor)
        spike = self.spike
        if spike and z > s * spike:
            s = z / spike
        return m, s

    def _learn_surprise(self, m: float, s: float) -> None:
        """learn_one's update of the likelihood: the recent mean surprise ``m``, its long-run statistics, the peak."""
        self._m = m
        k = self._k + 1
        self._k = k
        if k >= self._k_steady:
            a = self.long
        else:
            a = 1.0 / (k + self.prior_n)
            if a < self.long:
                a = self.long
        mu = self._mu
        d = m - mu
        self._mu = mu + a * d
        self._lvar = (1.0 - a) * (self._lvar + a * d * d)
        peak = self._peak * self.decay
        self._peak = s if s > peak else peak

    def _state_fmt(self) -> str:
        return self._forecast_fmt() + "dddqd"

    def _state(self) -> tuple:
        return (*self._forecast_state(), self._m, self._mu, self._lvar, self._k, self._peak)

    def _restore(self, values: tuple) -> None:
        used = self._restore_forecast(values)
        self._m, self._mu, self._lvar, self._k, self._peak = values[used:]
        self._memo = _NO_MEMO
