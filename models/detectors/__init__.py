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

One algorithm per module, over a shared kernel (``_kernel``: the base class,
its binary state, the seasonal forecasters):

=================  ==========================  ==================================================
name               class                       what
=================  ==========================  ==================================================
``seasonal_lik``   :class:`SeasonalLikelihood`  the default: seasonal surprise judged against the
                                               series' own history of surprise
``seasonal_ctx``   :class:`ContextLikelihood`   the above plus a novelty-of-shape channel
``seasonal_z``     :class:`SeasonalZScore`      seasonal surprise with a refractory period
``ewma_z``         :class:`EWMAZScore`          the baseline: distance from an EWMA
=================  ==========================  ==================================================

State: ``det.to_bytes()`` is the whole detector (a one-byte algorithm tag, a
version, the parameters unless all are defaults, then struct-packed numbers)
and :func:`detector_from_bytes` reads it back exactly, so the score after a
reload is the score without one; about 290 bytes for the default, at most
1 KiB.  Pickling goes through the same bytes.

Speed: the streams score then learn every scored series at every scrape, so
both are written for CPython's interpreter (the budget is 300k samples per
CPU-second; ``python bench/detector.py --micro`` measures the two calls).  The
worker makes one call, ``score_learn(v, t, above)``: the same arithmetic in the
same order, inlined for the default detector (the base class makes the two
calls), returning a score above ``above`` before learning so the caller can
read ``baseline`` first.  ``score_one`` keeps what it computed in a memo that
``learn_one`` reuses when it gets the same value and time; hot paths use
locals, ``math.floor`` rather than ``int()``, and precomputed sample counts
after which a learning rate is constant.  None of this changes a result:
``tests/unit/data/detector_scores.json`` holds scores recorded before it.
"""

from __future__ import annotations

from typing import Any

from river import base

from models.detectors._kernel import Detector, detector_from_bytes
from models.detectors.context import ContextLikelihood
from models.detectors.ewma import EWMAZScore
from models.detectors.likelihood import SeasonalLikelihood
from models.detectors.seasonal import SeasonalZScore

__all__ = [
    "DEFAULT_DETECTOR",
    "DETECTORS",
    "ContextLikelihood",
    "Detector",
    "EWMAZScore",
    "SeasonalLikelihood",
    "SeasonalZScore",
    "detector_from_bytes",
    "make_detector",
]

DETECTORS: dict[str, type[base.AnomalyDetector]] = {
    SeasonalLikelihood.name: SeasonalLikelihood,
    ContextLikelihood.name: ContextLikelihood,
    SeasonalZScore.name: SeasonalZScore,
    EWMAZScore.name: EWMAZScore,
}
DEFAULT_DETECTOR = SeasonalLikelihood.name


def make_detector(name: str = DEFAULT_DETECTOR, **params: Any) -> Detector:
    """A fresh detector by registry name, e.g. ``make_detector("ewma_z", alpha=0.01)``.

    >>> make_detector().name
    'seasonal_lik'
    >>> make_detector("nope")
    Traceback (most recent call last):
    ...
    KeyError: "unknown detector 'nope'; known: seasonal_lik, seasonal_ctx, seasonal_z, ewma_z"
    """
    try:
        cls = DETECTORS[name]
    except KeyError:
        raise KeyError(f"unknown detector {name!r}; known: {', '.join(DETECTORS)}") from None
    return cls(**params)
