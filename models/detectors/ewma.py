"""EWMAZScore: distance from an exponentially weighted mean, the baseline the other detectors are measured against."""

from __future__ import annotations

import math
from typing import Any

from models.detectors._kernel import Detector, register

__all__ = ["EWMAZScore"]

_sqrt = math.sqrt


@register
class EWMAZScore(Detector):
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
    >>> round(det.baseline, 1), len(det.to_bytes())
    (10.5, 47)
    """

    name = "ewma_z"
    TAG = 1
    _PARAMS = ("alpha", "warmup", "rel_floor", "feature")
    _PARAM_FMT = "dqd"
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

    def _state_fmt(self) -> str:
        return "qddd"

    def _state(self) -> tuple:
        return (self._n, self._mean, self._var, self._scale)

    def _restore(self, values: tuple) -> None:
        self._n, self._mean, self._var, self._scale = values
