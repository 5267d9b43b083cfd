"""Online univariate anomaly detectors, one instance per series, as River estimators.

Every detector follows River's protocol for anomaly detectors: call
``score_one(x)`` on a new sample *before* ``learn_one(x)`` (no look-ahead).
``x`` is a dict holding the sample under ``feature`` (``"value"`` unless
configured).  Both methods also take an optional ``t`` (epoch seconds), given
either as the keyword argument or as ``x["t"]``; detectors that know about
time use it, the others ignore it.

Scores are 0 during warm-up, higher means more anomalous, and they are never
capped: alert thresholds and NAB's threshold optimisation depend on how scores
rank, not on a 0-1 scale.  A sample that is not a finite number scores 0 and
is not learned, so one bad scrape cannot poison a baseline.

A detector's whole state pickles into well under 1 KiB (``pickle.dumps(det)``
is what the Faust table stores): the classes keep their state in
``__slots__`` and pickle a flat tuple of floats.

Speed: the streams call ``score_one`` then ``learn_one`` for every series at
every scrape, so both are written for CPython's interpreter (the budget is
300k samples per CPU-second for the default detector; ``python
bench/detector.py --micro`` measures it).  ``score_one`` keeps what it
computed in a memo that ``learn_one`` reuses when it gets the same value and
time; hot paths use locals, ``math.floor`` rather than ``int()``, and
precomputed sample counts after which a learning rate is constant.  None of
this changes a result: ``tests/unit/data/detector_scores.json`` holds scores
recorded before it, and the NAB replay writes byte-identical scores.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from river import base

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "ContextLikelihood",
    "EWMAZScore",
    "SeasonalLikelihood",
    "SeasonalZScore",
    "make_detector",
]

_isfinite = math.isfinite
_sqrt = math.sqrt
_log1p = math.log1p
# floor, not int(): a plain builtin call, several times cheaper than constructing an int,
# and the same result for the non-negative arguments it gets.
_floor = math.floor

# "No memo" for SeasonalLikelihood and ContextLikelihood: tuples shaped like their memos
# whose value is nan, which equals no sample, so learn_one needs no separate None test.
_NO_MEMO_LIK = (math.nan,) * 4
_NO_MEMO_CTX = (math.nan,) * 12
# 1 << c for every context code ContextLikelihood allows: its seen-test is one `&`.
_BITS = tuple(1 << c for c in range(1024))
_NEVER = 1 << 62  # a sample count no series reaches


def _steady_from(steady: Callable[[int], bool], rate: float, offset: float = 0.0) -> int:
    """A count from which ``steady(count)`` holds for good, or ``_NEVER`` if none is found.

    The learning rates are ``1/count`` until they reach their floor ``rate``; whether they
    have is a float test (``count * alpha < 1.0``, ``1.0 / (k + prior_n) < long``) that is
    monotone in the count, so from the first count that passes it every later one does.
    The hot paths compare the count with this instead of repeating mixed int/float
    arithmetic, and run the original test below it, so rates are bit-for-bit the same.
    """
    if not (0.0 < rate < math.inf and offset >= 0.0):
        return _NEVER  # odd settings: always the original test
    guess = 1.0 / rate - offset
    if not guess < _NEVER:
        return _NEVER
    count = max(1, int(guess) - 1)
    for _ in range(8):  # the guess is within a count or two of the threshold
        if steady(count):
            return count
        count += 1
    return _NEVER


class EWMAZScore(base.AnomalyDetector):
    """Distance from an exponentially weighted mean, in exponentially weighted standard deviations.

    The simple baseline the other detectors are compared with: the score of a
    sample is ``|x - mean| / std`` where mean and variance are exponentially
    weighted with rate ``alpha`` (``1/n`` while fewer than ``1/alpha``
    samples have been seen, so early estimates are plain averages).  Every
    sample teaches the baseline, anomalies included.

    Parameters
    ----------
    alpha
        Weight of the newest sample in the mean and variance; ``1/alpha`` is
        the memory in samples (0.003: about 1 day at a 5-minute interval).
    warmup
        Samples scored 0 while the estimates settle.
    rel_floor
        The standard deviation is never taken below ``rel_floor`` times the
        typical magnitude of the series, so a constant series plus tiny noise
        does not score huge.
    feature
        Key of the value in ``x``.

    Examples
    --------
    >>> det = EWMAZScore(warmup=10)
    >>> for v in [10.0, 11.0] * 50:
    ...     _ = det.score_one({"value": v})
    ...     det.learn_one({"value": v})
    >>> round(det.score_one({"value": 10.5}), 2), round(det.score_one({"value": 30.0}), 1)
    (0.0, 38.2)
    >>> round(det.baseline, 1)
    10.5
    """

    name = "ewma_z"
    __slots__ = ("alpha", "warmup", "rel_floor", "feature", "_n", "_mean", "_var", "_scale")

    def __init__(
        self, alpha: float = 0.003, warmup: int = 30, rel_floor: float = 1e-3, feature: str = "value"
    ) -> None:
        self.alpha = alpha
        self.warmup = warmup
        self.rel_floor = rel_floor
        self.feature = feature
        self._n = 0
        self._mean = 0.0
        self._var = 0.0
        self._scale = 0.0

    @property
    def baseline(self) -> float:
        """The expected value of the next sample (the weighted mean)."""
        return self._mean

    def params(self) -> dict[str, Any]:
        return {"alpha": self.alpha, "warmup": self.warmup, "rel_floor": self.rel_floor, "feature": self.feature}

    def score_one(self, x: dict, t: float | None = None) -> float:
        if self._n < self.warmup:
            return 0.0
        v = x.get(self.feature)
        if v is None or v != v or v in (math.inf, -math.inf):
            return 0.0
        sd = _sqrt(self._var) + self.rel_floor * self._scale + 1e-12
        return abs(v - self._mean) / sd

    def learn_one(self, x: dict, t: float | None = None) -> None:
        v = x.get(self.feature)
        if v is None or v != v or v in (math.inf, -math.inf):
            return
        n = self._n + 1
        self._n = n
        a = 1.0 / n if n * self.alpha < 1.0 else self.alpha
        d = v - self._mean
        self._mean += a * d
        self._var = (1.0 - a) * (self._var + a * d * d)
        self._scale += a * (abs(v) - self._scale)

    def __getstate__(self) -> tuple:
        return (self.alpha, self.warmup, self.rel_floor, self.feature,
                self._n, self._mean, self._var, self._scale)

    def __setstate__(self, state: tuple) -> None:
        (self.alpha, self.warmup, self.rel_floor, self.feature,
         self._n, self._mean, self._var, self._scale) = state


class SeasonalZScore(base.AnomalyDetector):
    """Surprise against a daily-seasonal baseline, with a refractory period after each alarm.

    Two forecasters run side by side on every series, and the one that has
    been more accurate lately judges each sample:

    * **flat**: an exponentially weighted level ``m`` (rate ``alpha``);
      forecast ``m``.
    * **seasonal** (only when samples carry a time ``t``): a level ``L`` plus
      a time-of-day profile ``S[b]`` of ``bins`` buckets over ``period``
      seconds, learned from the residual ``x - L`` at rate ``beta`` per
      sample falling in the bucket (an additive Holt-Winters model whose season
      is indexed by wall-clock time, not by sample count, so gaps and jittery
      scrape intervals need no special handling).

    Each forecaster keeps an exponentially weighted mean squared error; the
    seasonal one is used when its error is below ``season_gain`` times the
    flat one's, so a series without a daily cycle is judged by the flat model
    and one with a cycle is not flagged every morning.  The surprise of a
    sample is its absolute forecast error over the chosen model's error
    scale.  That error scale has a floor of ``rel_floor`` times the typical
    magnitude of the series, so a constant series is handled without
    dividing by zero and tiny noise on it scores near 0, while a real change
    of a constant series scores very high.

    NAB-style alarm hygiene: once a sample scores at least ``alarm``, the
    next ``refractory`` samples have their score multiplied by
    ``refractory_factor``.  One incident then raises one alarm at its start,
    not a burst, while the baseline keeps learning, so a level shift is
    adopted (after about ``1/alpha`` samples) before the refractory period
    ends.  Anomalous samples teach the baseline only at rate ``alpha`` and
    only up to ``clip`` error scales, so a spike moves it by at most
    ``alpha * clip`` scales however high it is.

    Counters should be fed as rates (deltas over the interval), as the streams
    do: a reset is then one hugely negative sample that scores high once and
    moves the baseline by only ``alpha`` of its size.

    The score is not capped; it is in units of forecast standard deviations
    (so 6 means a 6-sigma surprise).  It is 0 for the first ``warmup``
    samples and for samples that are not finite numbers (those are not
    learned either).

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
    alarm
        Score at which an alarm starts a refractory period.
    refractory
        Samples after an alarm whose score is damped.
    refractory_factor
        Multiplier of scores inside the refractory period (0 silences them).
    warmup
        Samples scored 0 while the estimates settle.
    rel_floor
        Floor of the error scale, relative to the series' typical magnitude.
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
    >>> det.name, det.params()["bins"]
    ('seasonal_z', 24)
    """

    name = "seasonal_z"
    _PARAMS = (
        "alpha", "beta", "bins", "period", "season_gain", "clip", "alarm", "refractory",
        "refractory_factor", "warmup", "rel_floor", "feature",
    )
    __slots__ = (
        "alpha", "beta", "bins", "period", "season_gain", "clip", "alarm", "refractory",
        "refractory_factor", "warmup", "rel_floor", "feature",
        "_n", "_flat", "_flat_var", "_level", "_season", "_season_var", "_scale",
        "_quiet", "_bin", "_n_steady",
    )

    def __init__(
        self,
        alpha: float = 0.003,
        beta: float = 0.1,
        bins: int = 24,
        period: float = 86400.0,
        season_gain: float = 0.8,
        clip: float = 20.0,
        alarm: float = 6.0,
        refractory: int = 400,
        refractory_factor: float = 0.0,
        warmup: int = 30,
        rel_floor: float = 1e-3,
        feature: str = "value",
    ) -> None:
        self.alpha = alpha
        self.beta = beta
        self.bins = bins
        self.period = period
        self.season_gain = season_gain
        self.clip = clip
        self.alarm = alarm
        self.refractory = refractory
        self.refractory_factor = refractory_factor
        self.warmup = warmup
        self.rel_floor = rel_floor
        self.feature = feature
        self._n = 0
        self._flat = 0.0  # flat model: level and mean squared error
        self._flat_var = 0.0
        self._level = 0.0  # seasonal model: level, profile and mean squared error
        self._season = [0.0] * bins
        self._season_var = 0.0
        self._scale = 0.0  # typical |x|, for the error floor
        self._quiet = 0  # samples left in the refractory period
        self._bin = -1  # bucket of the last sample, for `baseline`
        self._derive_z()

    def _derive_z(self) -> None:
        """Constants derived from the parameters, for the hot path (not pickled; parameters
        are fixed once a detector is made, as River's clone() assumes)."""
        alpha = self.alpha
        # From this sample count on, the level's rate is `alpha` (1/n before).
        self._n_steady = _steady_from(lambda n: not n * alpha < 1.0, alpha)

    # -- the River protocol ---------------------------------------------------------------

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
        # The surprise: |forecast error| / error scale of the judging model, on the current
        # state (SeasonalLikelihood and ContextLikelihood repeat this inline: the hot path).
        floor = self.rel_floor * self._scale + 1e-12
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

    # -- the two forecasters, shared with SeasonalLikelihood ------------------------------

    def _fit(self, v: float, t: float | None) -> float:
        """Learn one finite sample; returns its surprise on the state before the update."""
        n = self._n
        if n == 0:
            self._flat = self._level = v
            self._scale = abs(v)
            self._n = 1
            return 0.0
        n += 1
        self._n = n
        a = self.alpha if n >= self._n_steady else (1.0 / n if n * self.alpha < 1.0 else self.alpha)
        floor = self.rel_floor * self._scale + 1e-12

        # Updates use the error winsorised at `clip` error scales: a glitch of any size
        # moves the level by at most alpha * clip scales and the variance by a bounded
        # factor, while a genuine shift grows the variance until it is adopted.
        clip = self.clip
        d = v - self._flat
        flat_var = self._flat_var
        lim = clip * (_sqrt(flat_var) + floor)
        c = d if -lim < d < lim else (lim if d > 0.0 else -lim)
        self._flat += a * c
        self._flat_var = (1.0 - a) * (flat_var + a * c * c)
        season_var = self._season_var
        if t is not None:
            b = _floor((t % self.period) * self.bins / self.period)
            self._bin = b
            season = self._season
            e = v - self._level - season[b]
            lim = clip * (_sqrt(season_var) + floor)
            c = e if -lim < e < lim else (lim if e > 0.0 else -lim)
            self._level += a * c
            season[b] += self.beta * c
            self._season_var = (1.0 - a) * (season_var + a * c * c)
            if season_var < self.season_gain * flat_var:
                d = e
                flat_var = season_var
        # The floor's scale (mean |x|) is deliberately not winsorised: on bursty,
        # mostly-zero series (disk writes) it is what keeps bursts from all scoring huge.
        self._scale += a * (abs(v) - self._scale)
        return abs(d) / (_sqrt(flat_var) + floor)

    # -- what anomaly records and the streams need ----------------------------------------

    @property
    def baseline(self) -> float:
        """The value the judging model expected for the last learned sample's time of day."""
        if self._bin >= 0 and self._season_var < self.season_gain * self._flat_var:
            return self._level + self._season[self._bin]
        return self._flat

    def params(self) -> dict[str, Any]:
        """The constructor arguments, as a plain dict."""
        return {name: getattr(self, name) for name in self._PARAMS}

    def __getstate__(self) -> tuple:
        # The season is packed as raw doubles: 8 bytes a bucket instead of pickle's 9, exact.
        return (
            self.alpha, self.beta, self.bins, self.period, self.season_gain, self.clip, self.alarm,
            self.refractory, self.refractory_factor, self.warmup, self.rel_floor, self.feature,
            self._n, self._flat, self._flat_var, self._level,
            struct.pack("<%dd" % self.bins, *self._season),
            self._season_var, self._scale, self._quiet, self._bin,
        )

    def __setstate__(self, state: tuple) -> None:
        (
            self.alpha, self.beta, self.bins, self.period, self.season_gain, self.clip, self.alarm,
            self.refractory, self.refractory_factor, self.warmup, self.rel_floor, self.feature,
            self._n, self._flat, self._flat_var, self._level, season,
            self._season_var, self._scale, self._quiet, self._bin,
        ) = state
        self._season = list(struct.unpack("<%dd" % self.bins, season))
        self._derive_z()

class SeasonalLikelihood(SeasonalZScore):
    """Seasonal surprise, judged against the series' own history of surprise (an anomaly likelihood).

    One global threshold has to work for every series (NAB optimises one
    per detector over its whole corpus; the streams use
    ``anomaly_threshold``), yet a heavy-tailed count series produces 8-sigma
    forecast errors every day while a quiet gauge never does.  So the raw
    surprise is not the score; how unusual the *recent* surprise is for
    *this* series is, in the spirit of HTM's anomaly likelihood:

    1. ``z``: the :class:`SeasonalZScore` surprise (flat or time-of-day
       forecast, whichever has been more accurate; its refractory period is
       off).
    2. ``m``: an exponentially weighted mean of ``log1p(z)`` with weight
       ``short`` (about ``1/short`` samples).  The log keeps one glitch from
       dominating; the mean makes a sustained change (a level shift, a
       variance change, a burst) count more than one outlier.
    3. The score is ``(m - mu) / (sd + sd_floor)`` where ``mu`` and ``sd``
       are the long-run mean and deviation of ``m`` itself (weight
       ``long``).  It is 0 when negative.  Before the series has its own
       history these start from what Gaussian noise gives (``m`` averages
       0.53, deviation 0.07) with a weight of ``prior_n`` samples, so a
       brand-new series can alarm after ``warmup`` samples.
    4. Alarm hygiene without a threshold: a score is reported only when it
       exceeds the running peak of earlier scores, which decays by ``decay``
       per sample (0.995: halves in about 140 samples).  One incident then
       reports its onset and any escalation, not every sample of it, whatever
       threshold the user picks; NAB credits only the earliest detection in a
       window and charges every later one outside it.

    The scale is standard deviations of the recent mean surprise, so it is
    comparable across series: on the NAB subset the best single threshold is
    2.66 for all three cost profiles (2.45 with four synthetic categories
    added), while the streams default of 4 trades a scrape of delay for
    far fewer false alarms.  Constant series score 0 until they
    change (the forecaster's error floor keeps ``z`` at 0).

    Parameters
    ----------
    alpha, beta, bins, period, season_gain, clip, warmup, rel_floor, feature
        As for :class:`SeasonalZScore` (``alpha`` 0.002: a longer memory of
        level and error than the plain z-score, because the likelihood step
        already absorbs how noisy the series is).
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
        When positive, the score is at least ``z / spike``, so an isolated
        huge outlier (one scrape at 50 sigma) alarms on its own.  Off by
        default: on NAB it costs 5 points, because isolated outliers of bursty
        series (disk writes, request counts) are mostly not incidents.

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
    >>> det.name, det.params()["short"]
    ('seasonal_lik', 0.1)
    """

    name = "seasonal_lik"
    _PARAMS = (
        "alpha", "beta", "bins", "period", "season_gain", "clip", "warmup", "rel_floor",
        "short", "long", "decay", "sd_floor", "prior_n", "spike", "feature",
    )
    __slots__ = (
        "short", "long", "decay", "sd_floor", "prior_n", "spike", "_m", "_mu", "_lvar", "_k", "_peak", "_memo",
        "_k_steady",
    )

    # log1p(|z|) of standard Gaussian noise averages 0.535, and its mean with weight
    # 0.1 deviates by 0.073: the prior of a series that has no history of its own yet.
    _PRIOR_MEAN = 0.535
    _PRIOR_SD = 0.073
    _NO_MEMO = _NO_MEMO_LIK

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
        short: float = 0.1,
        long: float = 0.002,
        decay: float = 0.995,
        sd_floor: float = 0.05,
        prior_n: int = 50,
        spike: float = 0.0,
        feature: str = "value",
    ) -> None:
        super().__init__(alpha=alpha, beta=beta, bins=bins, period=period, season_gain=season_gain, clip=clip,
                         refractory=0, warmup=warmup, rel_floor=rel_floor, feature=feature)
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
        self._memo = self._NO_MEMO  # score_one's arithmetic, reused by learn_one (not state)

    def _derive_lik(self) -> None:
        """Like _derive_z: from this many updates on, the long-run rate is `long`."""
        long, prior_n = self.long, self.prior_n
        self._k_steady = _steady_from(lambda k: 1.0 / (k + prior_n) < long, long, prior_n)

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
        # SeasonalZScore's surprise inlined: this is the per-sample hot path (>= 300k/s a core).
        floor = self.rel_floor * self._scale + 1e-12
        if t is not None and self._season_var < self.season_gain * self._flat_var:
            period = self.period
            b = _floor((t % period) * self.bins / period)
            z = abs(v - self._level - self._season[b]) / (_sqrt(self._season_var) + floor)
        else:
            z = abs(v - self._flat) / (_sqrt(self._flat_var) + floor)
        m = self._m
        m += self.short * (_log1p(z) - m)
        s = (m - self._mu) / (_sqrt(self._lvar) + self.sd_floor)
        spike = self.spike
        if spike and z > s * spike:
            s = z / spike
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
        # (and _NO_MEMO_LIK's value is nan, which matches nothing).
        mv, mt, m, s = self._memo
        if mv != v or mt != t:
            if v is None or v - v != 0.0:
                return
            if self._n < self.warmup:
                self._fit(v, t)
                return
            self.score_one(x, t)
            mv, mt, m, s = self._memo
        self._memo = _NO_MEMO_LIK
        self._fit(v, t)
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

    def __getstate__(self) -> tuple:
        return (super().__getstate__(), self.short, self.long, self.decay, self.sd_floor, self.prior_n, self.spike,
                self._m, self._mu, self._lvar, self._k, self._peak)

    def __setstate__(self, state: tuple) -> None:
        (parent, self.short, self.long, self.decay, self.sd_floor, self.prior_n, self.spike,
         self._m, self._mu, self._lvar, self._k, self._peak) = state
        super().__setstate__(parent)
        self._derive_lik()
        self._memo = self._NO_MEMO


class ContextLikelihood(SeasonalLikelihood):
    """Seasonal surprise likelihood plus a CAD-OSE-like novelty of the recent shape, whichever is higher.

    Point surprise misses anomalies made of ordinary values in an unusual
    order: a CPU that stops oscillating, a count that stays at a level it
    only ever passed through, a temperature that creeps along a new path.
    So a second, complementary channel watches *contexts*:

    1. Each value is quantised into ``levels`` equal bands of the running
       range (min to max seen so far).  The last ``context`` band codes form
       one context (``levels ** context`` possible ones, 216 by default), and
       the contexts seen so far are kept as bits of one integer (27 bytes
       pickled).  A context never seen before is *novel*.  A new extreme
       lands in the outer band, so it is novel only if that band was rare.
    2. ``n``: an exponentially weighted mean of the novelty (0 or 1) with
       weight ``novelty_short`` (about 20 samples), i.e. the recent rate of
       new contexts.
    3. Like the surprise channel, ``n`` is judged against its own long-run
       mean and deviation (weight ``novelty_long``) plus ``novelty_floor``,
       and multiplied by ``novelty_weight`` so the two channels share one
       scale: a burst of new contexts in a series that has long stopped
       producing them scores high.

    The score is the larger of the :class:`SeasonalLikelihood` score and the
    weighted novelty score, reported only when it beats the decaying peak
    (``decay`` 0.99 here: halves in about 70 samples).  Everything else is as
    for :class:`SeasonalLikelihood`, including the scale: on the NAB subset
    the best single threshold is about 2.5 for all three cost profiles.  The
    extra channel adds some faint reports on noisy series, so the streams
    default is 4.5 (on the simulated fleet at a 15 s scrape: every incident
    found, about 0.1 false alarms per series-day, as ``seasonal_lik`` at 4).

    Parameters
    ----------
    alpha, beta, bins, period, season_gain, clip, warmup, rel_floor, short, long, decay, sd_floor, prior_n, spike, feature
        As for :class:`SeasonalLikelihood`.
    levels
        Bands the running range is quantised into.
    context
        Consecutive band codes that form one context (``levels ** context``
        must stay small: the seen-set is one bit per context in the state).
    novelty_short
        Weight of the newest novelty bit in the recent rate of new contexts.
    novelty_long
        Weight of the newest recent rate in its long-run mean and variance.
    novelty_floor
        Added to the long-run deviation of the rate.
    novelty_weight
        Multiplier that puts the novelty score on the surprise channel's scale.

    Examples
    --------
    A sawtooth 0, 1, ..., 5 that starts jumping between 5 and 0: values it
    has seen, in an order it has not.  The novelty channel reports it within
    two samples; point surprise alone takes several times as long:

    >>> det, lik = ContextLikelihood(), SeasonalLikelihood()
    >>> series = [float(i % 6) for i in range(3000)] + [5.0, 0.0] * 20
    >>> scores = {}
    >>> for d in (det, lik):
    ...     scores[d.name] = []
    ...     for i, v in enumerate(series):
    ...         scores[d.name].append(d.score_one({"value": v}, t=i * 15.0))
    ...         d.learn_one({"value": v}, t=i * 15.0)
    >>> max(scores["seasonal_ctx"][:3000]) < 2.5
    True
    >>> [round(s, 1) for s in scores["seasonal_ctx"][3000:3006]]
    [1.5, 2.7, 3.7, 4.4, 0.0, 0.0]
    >>> next(i for i, s in enumerate(scores["seasonal_lik"][3000:]) if s > 2.5)
    11
    >>> det.name, det.params()["levels"], det.params()["context"]
    ('seasonal_ctx', 6, 3)
    """

    name = "seasonal_ctx"
    _PARAMS = SeasonalLikelihood._PARAMS[:-1] + (
        "levels", "context", "novelty_short", "novelty_long", "novelty_floor", "novelty_weight", "feature",
    )
    __slots__ = (
        "levels", "context", "novelty_short", "novelty_long", "novelty_floor", "novelty_weight",
        "_lo", "_hi", "_hist", "_seen", "_nov", "_nmu", "_nvar", "_hcodes", "_k_nov_steady",
    )
    _NO_MEMO = _NO_MEMO_CTX

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
        short: float = 0.1,
        long: float = 0.002,
        decay: float = 0.99,
        sd_floor: float = 0.05,
        prior_n: int = 50,
        spike: float = 0.0,
        levels: int = 6,
        context: int = 3,
        novelty_short: float = 0.05,
        novelty_long: float = 0.005,
        novelty_floor: float = 0.05,
        novelty_weight: float = 1.5,
        feature: str = "value",
    ) -> None:
        if levels < 1 or context < 1 or levels**context > 1024:  # 1024 bits: 128 bytes of state
            raise ValueError(f"levels ** context must be between 1 and 1024, got {levels} ** {context}")
        super().__init__(alpha=alpha, beta=beta, bins=bins, period=period, season_gain=season_gain, clip=clip,
                         warmup=warmup, rel_floor=rel_floor, short=short, long=long, decay=decay,
                         sd_floor=sd_floor, prior_n=prior_n, spike=spike, feature=feature)
        self.levels = levels
        self.context = context
        self.novelty_short = novelty_short
        self.novelty_long = novelty_long
        self.novelty_floor = novelty_floor
        self.novelty_weight = novelty_weight
        self._lo = self._hi = math.nan  # running range (nan: no sample yet)
        self._hist = 0  # band codes of the last context - 1 samples, as one base-`levels` number
        self._seen = 0  # bit c set: context c has been seen
        self._nov = self._nmu = self._nvar = 0.0  # recent rate of new contexts; its long-run mean, variance
        self._derive_ctx()

    def _derive_ctx(self) -> None:
        """Like _derive_z: the context codes' modulus, and from when the novelty's long-run
        rate is `novelty_long`."""
        self._hcodes = self.levels ** (self.context - 1)
        novelty_long = self.novelty_long
        self._k_nov_steady = _steady_from(lambda k: 1.0 / k < novelty_long, novelty_long)

    def score_one(self, x: dict, t: float | None = None) -> float:
        # The per-sample hot path of the streams (>= 300k samples/s a core): SeasonalLikelihood's
        # score inlined, locals instead of repeated attribute reads, and `-d if d < 0.0 else d`
        # instead of abs() (no call; its -0.0 for -0.0 cannot change a score: z only enters
        # log1p, a mean and comparisons).
        n = self._n
        if n < self.warmup:
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
        # Channel 1.  Both forecasters' errors and error scales are computed, not only the
        # judging one's, because learn_one needs both and takes them from the memo.
        floor = self.rel_floor * self._scale + 1e-12
        flat_var = self._flat_var
        df = v - self._flat
        sf = _sqrt(flat_var) + floor
        if t is None:
            b = -1
            ds = ss = 0.0
            z = (-df if df < 0.0 else df) / sf
        else:
            period = self.period
            b = _floor((t % period) * self.bins / period)
            season_var = self._season_var
            ds = v - self._level - self._season[b]
            ss = _sqrt(season_var) + floor
            if season_var < self.season_gain * flat_var:
                z = (-ds if ds < 0.0 else ds) / ss
            else:
                z = (-df if df < 0.0 else df) / sf
        m = self._m
        m += self.short * (_log1p(z) - m)
        s = (m - self._mu) / (_sqrt(self._lvar) + self.sd_floor)
        spike = self.spike
        if spike and z > s * spike:
            s = z / spike
        # Channel 2: is this context new?
        levels = self.levels
        lo = self._lo
        span = self._hi - lo
        # The band, clamped to 0 .. levels - 1 before it becomes an int, so a jump far
        # outside a tiny range (an infinite quotient) is the top band, not an OverflowError.
        q = (v - lo) / span * levels if span > 0.0 else 0.0
        if q < 1.0:
            q = 0
        elif q >= levels:
            q = levels - 1
        else:
            q = _floor(q)
        c = self._hist * levels + q  # < levels ** context, as _hist < levels ** (context - 1)
        new = not self._seen & _BITS[c]
        nov = self._nov
        nov += self.novelty_short * ((1.0 if new else 0.0) - nov)
        s2 = self.novelty_weight * (nov - self._nmu) / (_sqrt(self._nvar) + self.novelty_floor)
        if s2 > s:
            s = s2
        # One tuple: cheaper to build and unpack than a slot per value.  Not for n == 0
        # (warmup=0): learn_one learns the first sample by its own path.
        self._memo = (v, t, m, s, c, nov, new, b, df, sf, ds, ss) if n else _NO_MEMO_CTX
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
        # (and _NO_MEMO_CTX's value is nan, which matches nothing).
        mv, mt, m, s, c, nov, new, b, df, sf, ds, ss = self._memo
        if mv != v or mt != t:
            # v - v is nan for inf and nan: one test for "not a finite number".
            if v is None or v - v != 0.0:
                return
            n = self._n
            if n < self.warmup or not n:
                self._memo = _NO_MEMO_CTX
                self._fit(v, t)
                self._band(v)
                return
            self.score_one(x, t)
            mv, mt, m, s, c, nov, new, b, df, sf, ds, ss = self._memo
        self._memo = _NO_MEMO_CTX
        # SeasonalZScore._fit inlined: the same updates, from the errors score_one computed.
        n = self._n + 1
        self._n = n
        a = self.alpha if n >= self._n_steady else (1.0 / n if n * self.alpha < 1.0 else self.alpha)
        keep = 1.0 - a
        clip = self.clip
        lim = clip * sf
        e = df if -lim < df < lim else (lim if df > 0.0 else -lim)
        self._flat += a * e
        self._flat_var = keep * (self._flat_var + a * e * e)
        if b >= 0:
            self._bin = b
            lim = clip * ss
            e = ds if -lim < ds < lim else (lim if ds > 0.0 else -lim)
            self._level += a * e
            self._season[b] += self.beta * e
            self._season_var = keep * (self._season_var + a * e * e)
        scale = self._scale
        self._scale = scale + a * ((-v if v < 0.0 else v) - scale)
        # The recent mean surprise's long-run mean and variance (SeasonalLikelihood).
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
        # The novelty rate's long-run statistics start from the series' own first values
        # (1/k): early on every context is new, and that must not look like an incident later.
        self._nov = nov
        if k >= self._k_nov_steady:
            a = self.novelty_long
        else:
            a = 1.0 / k
            if a < self.novelty_long:
                a = self.novelty_long
        nmu = self._nmu
        d = nov - nmu
        self._nmu = nmu + a * d
        self._nvar = (1.0 - a) * (self._nvar + a * d * d)
        if new:  # a big-int update only when the context is new
            self._seen |= _BITS[c]
        self._hist = c % self._hcodes
        # `not >=` rather than `<`: also true while the range is still nan (warmup=0).
        if not v >= self._lo:
            self._lo = v
        if not v <= self._hi:
            self._hi = v
        peak = self._peak * self.decay
        self._peak = s if s > peak else peak

    def _band(self, v: float) -> None:
        """Warm-up: record the value's band in the history and widen the range."""
        if self._lo != self._lo:
            self._lo = self._hi = v
            return
        span = self._hi - self._lo
        q = (v - self._lo) / span * self.levels if span > 0.0 else 0.0
        q = 0 if q < 1.0 else (self.levels - 1 if q >= self.levels else _floor(q))  # as in score_one
        self._hist = (self._hist * self.levels + q) % self._hcodes
        if v < self._lo:
            self._lo = v
        elif v > self._hi:
            self._hi = v

    def __getstate__(self) -> tuple:
        return (super().__getstate__(), self.levels, self.context, self.novelty_short, self.novelty_long,
                self.novelty_floor, self.novelty_weight, self._lo, self._hi, self._hist, self._seen,
                self._nov, self._nmu, self._nvar)

    def __setstate__(self, state: tuple) -> None:
        (parent, self.levels, self.context, self.novelty_short, self.novelty_long, self.novelty_floor,
         self.novelty_weight, self._lo, self._hi, self._hist, self._seen, self._nov, self._nmu, self._nvar) = state
        super().__setstate__(parent)
        self._derive_ctx()


DETECTORS: dict[str, type[base.AnomalyDetector]] = {
    ContextLikelihood.name: ContextLikelihood,
    SeasonalLikelihood.name: SeasonalLikelihood,
    SeasonalZScore.name: SeasonalZScore,
    EWMAZScore.name: EWMAZScore,
}
DEFAULT_DETECTOR = ContextLikelihood.name


def make_detector(name: str = DEFAULT_DETECTOR, **params: Any) -> base.AnomalyDetector:
    """A fresh detector by registry name, e.g. ``make_detector("ewma_z", alpha=0.01)``.

    >>> make_detector().name
    'seasonal_ctx'
    >>> make_detector("nope")
    Traceback (most recent call last):
    ...
    KeyError: "unknown detector 'nope'; known: seasonal_ctx, seasonal_lik, seasonal_z, ewma_z"
    """
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None
    return cls(**params)
