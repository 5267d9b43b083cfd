"""The rule file schema: pydantic models of groups and the five kinds of rule.

Strict and closed, like the topic records: an unknown key is an error (a typo
such as ``thresold`` must not silently disable a page), a string where a number
belongs is an error, durations are Prometheus' (``30s``, ``5m``, ``1h30m``,
``4d``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter, model_validator

from streams._durations import duration_seconds

__all__ = [
    "parse_duration",
    "Duration",
    "Guard",
    "ThresholdRule",
    "RateRule",
    "PredictRule",
    "EventRule",
    "AnomalyRule",
    "Rule",
    "RuleGroup",
    "RuleFile",
    "RULE",
    "KINDS",
    "OPS",
]

def parse_duration(v: object) -> float:
    """Seconds in a Prometheus duration.

    >>> parse_duration("1h30m"), parse_duration("0s"), parse_duration("4d")
    (5400.0, 0.0, 345600.0)
    """
    if not isinstance(v, str):
        raise ValueError(f"expected a duration such as '30s', '5m' or '1h30m', got {type(v).__name__} {v!r}")
    seconds = duration_seconds(v, fractional_seconds=False)
    if seconds is None:
        raise ValueError(f"{v!r} is not a duration: use digits and units y w d h m s ms, e.g. '90s', '5m', '1h30m'")
    return seconds


Duration = Annotated[float, BeforeValidator(parse_duration)]
OPS = (">", ">=", "<", "<=", "==", "!=")
Op = Literal[">", ">=", "<", "<=", "==", "!="]
_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
LabelName = Annotated[str, Field(pattern=_NAME)]
Number = Annotated[float, Field(allow_inf_nan=False)]


class _Closed(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", populate_by_name=True)


class Guard(_Closed):
    """A second condition on another metric of the same entity (PromQL's ``and``)."""

    metric: str
    op: Op
    threshold: Number


class _Common(_Closed):
    alert: Annotated[str, Field(pattern=_NAME, max_length=200)]
    matchers: list[str] = Field(default_factory=list)
    """Alertmanager matchers on the alert's identity labels, e.g. ``namespace=~"prod-.*"``."""
    for_: Duration = Field(0.0, alias="for", ge=0)
    keep_firing_for: Duration = Field(0.0, ge=0)
    severity: Literal["critical", "warning", "info"] = "warning"
    labels: dict[LabelName, str] = Field(default_factory=dict)
    annotations: dict[LabelName, str] = Field(default_factory=dict)
    runbook_url: str | None = None

    @model_validator(mode="after")
    def _reserved(self) -> _Common:
        for reserved in ("alertname", "severity"):
            if reserved in self.labels:
                raise ValueError(f"labels.{reserved} is set by the rule itself (use `alert:` / `severity:`)")
        return self


def _resolve_side(op: str, threshold: float, resolve: float | None) -> None:
    if resolve is None:
        return
    if op in ("==", "!="):
        raise ValueError(f"resolve_threshold makes no sense with op {op!r}")
    if op in (">", ">=") and resolve > threshold:
        raise ValueError(f"resolve_threshold {resolve} must be <= threshold {threshold} for op {op!r} (it is where the alert lets go)")
    if op in ("<", "<=") and resolve < threshold:
        raise ValueError(f"resolve_threshold {resolve} must be >= threshold {threshold} for op {op!r} (it is where the alert lets go)")


class ThresholdRule(_Common):
    """Fires when ``metric op threshold``; lets go at ``resolve_threshold`` (hysteresis)."""

    kind: Literal["threshold"]
    metric: str
    op: Op = ">"
    threshold: Number
    resolve_threshold: Number | None = None
    and_: Guard | None = Field(None, alias="and")

    @model_validator(mode="after")
    def _hysteresis(self) -> ThresholdRule:
        _resolve_side(self.op, self.threshold, self.resolve_threshold)
        return self


class RateRule(ThresholdRule):
    """Fires when the change of ``metric`` per second over ``window`` passes the threshold."""

    kind: Literal["rate"]  # type: ignore[assignment]
    window: Duration = Field(gt=0)
    counter: bool = False
    """Treat a decrease as a counter reset (Prometheus ``rate``) rather than a fall (``delta``)."""


class PredictRule(_Common):
    """Fires when the linear trend of ``metric`` reaches the limit within ``within``."""

    kind: Literal["predict"]
    metric: str
    limit_metric: str | None = None
    """Another metric of the same entity that is the ceiling, e.g. ``container.memory_limit_bytes``."""
    limit: Number | None = None
    """A constant ceiling, e.g. ``1.0`` for a ``*_used_share``."""
    within: Duration = Field(gt=0)
    resolve_within: Duration | None = Field(None, gt=0)
    window: Duration = Field(6 * 3600.0, gt=0)
    min_points: int = Field(10, ge=3)
    min_span: Duration | None = Field(None, ge=0)
    """Oldest-to-newest span the fit needs; default a quarter of ``window``."""
    min_r2: float = Field(0.8, ge=0, le=1)
    and_: Guard | None = Field(None, alias="and")

    @model_validator(mode="after")
    def _one_limit(self) -> PredictRule:
        if (self.limit_metric is None) == (self.limit is None):
            raise ValueError("give exactly one of limit_metric (a metric of the same entity) or limit (a number)")
        if self.resolve_within is not None and self.resolve_within < self.within:
            raise ValueError("resolve_within must be >= within (it is where the alert lets go)")
        return self


class EventRule(_Common):
    """Fires when ``count`` matching Kubernetes Events hit one object within ``window``."""

    kind: Literal["event"]
    reasons: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    event_type: str | None = None
    """``Warning`` or ``Normal``; any when omitted."""
    involved_kinds: list[str] = Field(default_factory=list)
    """e.g. ``[Pod]``; any kind when empty."""
    message: str | None = None
    """A regex the event message must contain (``re.search``)."""
    count: int = Field(1, ge=1)
    window: Duration = Field(600.0, gt=0)
    resolve_reasons: list[Annotated[str, Field(min_length=1)]] = Field(default_factory=list)
    """Reasons that end the alert for the same object at once, e.g. ``NodeHasSufficientMemory``."""


class AnomalyRule(_Common):
    """Fires when a series has ``count`` anomalies within ``window`` (sustained, not a blip)."""

    kind: Literal["anomaly"]
    metrics: list[str] = Field(default_factory=list)
    """Metric names; any when empty."""
    min_score: Number | None = None
    count: int = Field(3, ge=1)
    window: Duration = Field(300.0, gt=0)


Rule = Annotated[
    Union[ThresholdRule, RateRule, PredictRule, EventRule, AnomalyRule],
    Field(discriminator="kind"),
]


def _unique_names(groups: list[RuleGroup]) -> list[RuleGroup]:
    seen: set[str] = set()
    for g in groups:
        if g.name in seen:
            raise ValueError(f"group name {g.name!r} is used twice (rule state is keyed by group)")
        seen.add(g.name)
    return groups


class RuleGroup(_Closed):
    """A group; its rules are validated one by one (``RULE``) so one bad rule does not hide another's errors."""

    name: Annotated[str, Field(min_length=1)]
    rules: list[dict[str, Any]] = Field(default_factory=list)


class RuleFile(_Closed):
    groups: Annotated[list[RuleGroup], AfterValidator(_unique_names)]


RULE: TypeAdapter[Any] = TypeAdapter(Rule)
KINDS = ("threshold", "rate", "predict", "event", "anomaly")
