"""The shared kernel of the detectors: the River base class with compact exact serialization, and the forecasters.

:class:`Detector` gives every detector ``params()``, ``to_bytes()`` and
pickling through those bytes; :func:`detector_from_bytes` reads them back.
The layout is::

    tag (u8)  version (u8)  flags (u8)  [mask (u32)  params]  state

``tag`` names the algorithm (see ``TAG`` on each class), ``flags`` bit 0 says
whether parameters follow: only those that differ from their defaults, each
named by a bit of ``mask`` (so the streams' two extra parameters cost 20
bytes, not a copy of all sixteen), and the state is the class's
numbers, struct-packed little-endian doubles and 64-bit integers, so a
detector read back scores exactly as the one written (no rounding, no
pickle).  285 bytes for the default detector (305 as the worker makes it),
1 KiB at most for any.

:class:`SeasonalForecast` is the pair of forecasters the seasonal detectors
share: a flat exponentially weighted level, and a level plus a time-of-day
profile; whichever has had the lower recent error judges a sample, and the
error scale has a floor, relative to the series' magnitude and absolute in
its unit (``resolution``).
"""

from __future__ import annotations

import inspect
import math
import struct
from collections.abc import Callable
from operator import attrgetter
from typing import Any, ClassVar

from river import base

from models.errors import DetectorStateError

__all__ = ["Detector", "SeasonalForecast", "detector_from_bytes", "register", "steady_from", "NEVER"]

_sqrt = math.sqrt
# floor, not int(): a plain builtin call, several times cheaper than constructing an int,
# and the same result for the non-negative arguments it gets.
_floor = math.floor

NEVER = 1 << 62  # a sample count no series reaches
_HEAD = struct.Struct("<BBB")
_MASK = struct.Struct("<I")
_CUSTOM = 1  # flags bit: the parameters that are not defaults follow the header
_BY_TAG: dict[int, type[Detector]] = {}
_PARAM_GETTERS: dict[type, Callable[[Any], tuple]] = {}
_HEADS: dict[tuple, bytes] = {}
"""(class, parameter values) -> the bytes before a detector's state (see ``Detector.to_bytes``)."""
_STRUCTS: dict[str, struct.Struct] = {}


def steady_from(steady: Callable[[int], bool], rate: float, offset: float = 0.0) -> int:
    """A count from which ``steady(count)`` holds for good, or ``NEVER`` if none is found.

    The learning rates are ``1/count`` until they reach their floor ``rate``; whether they
    have is a float test (``count * alpha < 1.0``, ``1.0 / (k + prior_n) < long``) that is
    monotone in the count, so from the first count that passes it every later one does.
    The hot paths compare the count with this instead of repeating mixed int/float
    arithmetic, and run the original test below it, so rates are bit-for-bit the same.
    """
    if not (0.0 < rate < math.inf and offset >= 0.0):
        return NEVER  # odd settings: always the original test
    guess = 1.0 / rate - offset
    if not guess < NEVER:
        return NEVER
    count = max(1, int(guess) - 1)
    for _ in range(8):  # the guess is within a count or two of the threshold
        if steady(count):
            return count
        count += 1
    return NEVER


def register(cls: type[Detector]) -> type[Detector]:
    """Class decorator: make ``cls`` readable by :func:`detector_from_bytes` under its ``TAG``."""
    if cls.TAG in _BY_TAG and _BY_TAG[cls.TAG] is not cls:
        raise ValueError(f"detector tag {cls.TAG} is taken by {_BY_TAG[cls.TAG].__name__}")
    if len(cls._PARAM_FMT) != len(cls._PARAMS) - 1 or cls._PARAMS[-1] != "feature" or len(cls._PARAMS) > 32:
        raise ValueError(f"{cls.__name__}: _PARAM_FMT must give one struct code per parameter but the last, feature (32 at most)")
    _BY_TAG[cls.TAG] = cls
    return cls


def detector_from_bytes(data: bytes) -> Detector:
    """The detector that ``to_bytes()`` wrote, in exactly its state.

    >>> from models.detectors import make_detector
    >>> det = make_detector("ewma_z", alpha=0.01)
    >>> for v in (1.0, 2.0, 3.0):
    ...     det.learn_one({"value": v})
    >>> copy = detector_from_bytes(det.to_bytes())
    >>> copy.params()["alpha"], copy.baseline == det.baseline
    (0.01, True)
    >>> detector_from_bytes(b"\\x7f\\x01\\x00")
    Traceback (most recent call last):
    ...
    models.errors.DetectorStateError: unknown detector tag 127 (known: 1, 2, 3, 4)
    """
    data = bytes(data)
    if len(data) < _HEAD.size:
        raise DetectorStateError(f"detector state of {len(data)} bytes is shorter than its header")
    tag, version, flags = _HEAD.unpack_from(data)
    cls = _BY_TAG.get(tag)
    if cls is None:
        raise DetectorStateError(f"unknown detector tag {tag} (known: {', '.join(map(str, sorted(_BY_TAG)))})")
    if version != cls.VERSION:
        raise DetectorStateError(f"{cls.name} state version {version}; this kubepulse reads version {cls.VERSION}")
    try:
        return cls._from_bytes(data, flags)
    except (struct.error, UnicodeDecodeError, ValueError, TypeError) as exc:
        raise DetectorStateError(f"corrupt {cls.name} state ({len(data)} bytes): {exc}") from exc


class Detector(base.AnomalyDetector):
    """River anomaly detector with named parameters and a compact, exact binary state.

    Subclasses set ``name`` (the registry name), ``TAG`` (one byte, never reused),
    ``VERSION`` (bumped when the state layout changes), ``_PARAMS`` (constructor
    arguments, ``feature`` last), ``_PARAM_FMT`` (a struct code per parameter but
    ``feature``), and implement ``_state_fmt``, ``_state`` and ``_restore``.
    """

    name: ClassVar[str]
    TAG: ClassVar[int]
    VERSION: ClassVar[int] = 1
    _PARAMS: ClassVar[tuple[str, ...]]
    _PARAM_FMT: ClassVar[str]
    _defaults_cache: ClassVar[dict[type, dict[str, Any]]] = {}

    # -- what subclasses provide -----------------------------------------------------------

    def _state_fmt(self) -> str:
        """struct format of ``_state()`` (without the byte-order prefix); may depend on parameters."""
        raise NotImplementedError

    def _state(self) -> tuple:
        raise NotImplementedError

    def _restore(self, values: tuple) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------

    def params(self) -> dict[str, Any]:
        """The constructor arguments, as a plain dict."""
        return {name: getattr(self, name) for name in self._PARAMS}

    @classmethod
    def _defaults(cls) -> dict[str, Any]:
        got = Detector._defaults_cache.get(cls)
        if got is None:
            sig = inspect.signature(cls.__init__)
            got = Detector._defaults_cache[cls] = {name: sig.parameters[name].default for name in cls._PARAMS}
        return got

    def to_bytes(self) -> bytes:
        """The whole detector: algorithm tag, version, the parameters that are not defaults, and state."""
        # Checkpoints write every detector of a node (one per scored series), so the part that depends on
        # the parameters only is made once per distinct parameter set, and each state format compiled once.
        cls = type(self)
        getter = _PARAM_GETTERS.get(cls)
        if getter is None:
            getter = _PARAM_GETTERS[cls] = attrgetter(*cls._PARAMS)
        key = (cls, getter(self))
        head = _HEADS.get(key)
        if head is None:
            if len(_HEADS) >= 4096:  # many parameter sets (a grid search): start over rather than grow
                _HEADS.clear()
            head = _HEADS[key] = self._head_bytes()
        fmt = self._state_fmt()
        packer = _STRUCTS.get(fmt)
        if packer is None:
            packer = _STRUCTS[fmt] = struct.Struct("<" + fmt)
        return head + packer.pack(*self._state())

    def _head_bytes(self) -> bytes:
        """Tag, version, flags and the parameters that differ from their defaults: what precedes the state."""
        p = self.params()
        defaults = self._defaults()
        mask = 0
        values = []
        for i, name in enumerate(self._PARAMS):
            if p[name] != defaults[name]:
                mask |= 1 << i
                values.append(p[name])
        parts = [_HEAD.pack(self.TAG, self.VERSION, _CUSTOM if mask else 0)]
        if mask:
            # Only what differs: a u32 mask (bit i: _PARAMS[i] follows), then each value in order.
            parts.append(_MASK.pack(mask))
            fmt = "<" + "".join(code for i, code in enumerate(self._PARAM_FMT) if mask >> i & 1)
            nums = [int(v) if code == "q" else v
                    for v, code in zip(values, (c for i, c in enumerate(self._PARAM_FMT) if mask >> i & 1))]
            parts.append(struct.pack(fmt, *nums))
            if mask >> (len(self._PARAMS) - 1) & 1:
                feature = p["feature"].encode()
                if len(feature) > 255:
                    raise ValueError(f"feature name longer than 255 bytes: {p['feature'][:40]!r}...")
                parts.append(bytes((len(feature),)) + feature)
        return b"".join(parts)

    @classmethod
    def _from_bytes(cls, data: bytes, flags: int) -> Detector:
        offset = _HEAD.size
        params: dict[str, Any] = {}
        if flags & _CUSTOM:
            (mask,) = _MASK.unpack_from(data, offset)
            offset += _MASK.size
            if mask >> len(cls._PARAMS):
                raise ValueError(f"parameter mask {mask:#x} names more than {len(cls._PARAMS)} parameters")
            names = [n for i, n in enumerate(cls._PARAMS[:-1]) if mask >> i & 1]
            fmt = "<" + "".join(code for i, code in enumerate(cls._PARAM_FMT) if mask >> i & 1)
            params.update(zip(names, struct.unpack_from(fmt, data, offset)))
            offset += struct.calcsize(fmt)
            if mask >> (len(cls._PARAMS) - 1) & 1:
                size = data[offset]
                feature = data[offset + 1: offset + 1 + size].decode()
                if len(feature.encode()) != size:
                    raise ValueError("truncated feature name")
                params["feature"] = feature
                offset += 1 + size
        det = cls(**params)
        fmt = "<" + det._state_fmt()
        if len(data) - offset != struct.calcsize(fmt):
            raise ValueError(f"state is {len(data) - offset} bytes, expected {struct.calcsize(fmt)}")
        det._restore(struct.unpack_from(fmt, data, offset))
        return det

    def score_learn(self, v: float, t: float, above: float) -> float:
        """``score_one`` then ``learn_one`` of the value ``v`` at time ``t``, as the streams call them, in one call.

        A score above ``above`` comes back *before* the sample is learned: the caller reads
        ``baseline`` (the expectation the sample was judged against), then calls ``learn_one``.
        Detectors may override this with a faster path; the result must be the same, bit for bit.
        """
        x = {self.feature: v}
        score = self.score_one(x, t)
        if not score > above:
            self.learn_one(x, t)
        return score

    def __reduce__(self) -> tuple:
        # Pickle through the compact bytes: what the Faust table stores stays small and exact.
        return (detector_from_bytes, (self.to_bytes(),))


class SeasonalForecast(Detector):
    """The two forecasters of the seasonal detectors, and the surprise of a sample against them.

    * **flat**: an exponentially weighted level ``_flat`` (rate ``alpha``) and
      mean squared error ``_flat_var``.
    * **seasonal** (only when samples carry a time ``t``): a level plus a
      time-of-day profile of ``bins`` buckets over ``period`` seconds, learned
      from the residual at rate ``beta`` per sample in the bucket (an additive
      Holt-Winters model indexed by wall-clock time, so gaps and jittery scrape
      intervals need no special handling), and its mean squared error.

    The seasonal forecaster judges when its error is below ``season_gain`` times
    the flat one's: the season is found from the data, not assumed.  The error
    scale has a floor of ``rel_floor`` times the typical magnitude of the series
    plus ``resolution`` in the series' own unit (0 when the unit is unknown, as
    in NAB): a counter that is almost always 0 is then not infinitely surprised
    by one event.  Updates use the error winsorised at ``clip`` error scales.
    """

    _FORECAST = ("alpha", "beta", "bins", "period", "season_gain", "clip", "warmup", "rel_floor", "resolution")
    _FORECAST_FMT = "ddqdddqdd"

    def _init_forecast(self, alpha: float, beta: float, bins: int, period: float, season_gain: float, clip: float,
                       warmup: int, rel_floor: float, resolution: float, feature: str) -> None:
        if not 1 <= bins <= 32767 or period <= 0 or resolution < 0:
            raise ValueError(f"need 1 <= bins <= 32767, period > 0 and resolution >= 0 (got {bins}, {period}, {resolution})")
        self.alpha = alpha
        self.beta = beta
        self.bins = bins
        self.period = period
        self.season_gain = season_gain
        self.clip = clip
        self.warmup = warmup
        self.rel_floor = rel_floor
        self.resolution = resolution
        self.feature = feature
        self._n = 0
        self._flat = 0.0  # flat model: level and mean squared error
        self._flat_var = 0.0
        self._level = 0.0  # seasonal model: level, profile and mean squared error
        self._season = [0.0] * bins
        self._season_var = 0.0
        self._scale = 0.0  # typical |x|, for the error floor
        self._bin = -1  # bucket of the last sample, for `baseline`
        self._derive_forecast()

    def _derive_forecast(self) -> None:
        """Constants derived from the parameters, for the hot path (not state: parameters are
        fixed once a detector is made, as River's clone() assumes)."""
        alpha = self.alpha
        # From this sample count on, the level's rate is `alpha` (1/n before).
        self._n_steady = steady_from(lambda n: not n * alpha < 1.0, alpha)
        # resolution 0 keeps the floor bit-for-bit what it was before there was one.
        self._abs_floor = self.resolution + 1e-12

    def _forecast_state(self) -> tuple:
        return (self._n, self._flat, self._flat_var, self._level, *self._season, self._season_var, self._scale,
                self._bin)

    def _forecast_fmt(self) -> str:
        return "qddd%dd" % self.bins + "ddh"

    def _restore_forecast(self, values: tuple) -> int:
        """Set the forecasters from ``values``; returns how many it used."""
        bins = self.bins
        self._n, self._flat, self._flat_var, self._level = values[:4]
        self._season = list(values[4:4 + bins])
        self._season_var, self._scale, self._bin = values[4 + bins:7 + bins]
        return 7 + bins

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
        floor = self.rel_floor * self._scale + self._abs_floor

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

    @property
    def baseline(self) -> float:
        """The value the judging model expected for the last learned sample's time of day."""
        if self._bin >= 0 and self._season_var < self.season_gain * self._flat_var:
            return self._level + self._season[self._bin]
        return self._flat
