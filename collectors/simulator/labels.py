"""Ground truth of the simulated fleet: read the labels file and score detections (anomalies, alerts) against it.

A detection *matches* an incident when it is in the same cluster, on the
incident's own entity, and between ``start - before_s`` and ``end + after_s``:

- an incident on a pod (every kind but ``node_memory_pressure``) is matched
  by a detection on that namespace/pod (and on that container when both name
  one: the pod's own series, its interfaces and volumes count, another
  container's do not); a detection on the node's own series matches only when
  it names one of ``Incident.metrics`` (a storm's ``node.network.rx_bytes_per_s``);
- a node incident is matched by a detection on the node's own series;
- with ``match_metric=True`` a detection that names a metric must name one of
  ``Incident.metrics``.

``scope="node"`` is the older, looser matcher, kept for summaries that count
alerts on a node's pods as finding its incident (a pod incident matched by
any node-level detection on its node, a node incident by any detection on the
node, pods included, e.g. ``Evicted`` events). It flatters a detector's
recall, so detector evaluations use the default ``scope="entity"``.

``after_s`` (5 minutes by default) counts the OOM kill at a leak's end and
the return to normal after an incident as part of it. Detections matching no
incident are false alarms, counted once per *episode* (a run of detections
on one series no more than ``episode_gap_s`` apart).

>>> from datetime import datetime, timedelta, timezone
>>> from models.records import Incident
>>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
>>> inc = Incident(incident_id="i1", kind="cpu_spike", cluster="c1", node="n1", namespace="shop", pod="cart-1",
...                container="cart", metrics=["container.cpu_cores"], start=t0, end=t0 + timedelta(minutes=10))
>>> hit = Detection.from_series("c1/shop/cart-1/cart/container.cpu_cores", t0 + timedelta(seconds=30), source="anomaly")
>>> noise = Detection.from_series("c1/-/node:n2/-/node.cpu_cores", t0, source="anomaly")
>>> s = score([inc], [hit, noise], interval_s=15, series_days=10.0)
>>> s.detection_rate, s.median_delay_scrapes, s.false_alarms, s.false_alarms_per_series_day
(1.0, 2.0, 1, 0.1)
>>> on_node = Detection.from_series("c1/-/node:n1/-/node.cpu_cores", t0, source="anomaly")
>>> matches(inc, on_node), matches(inc, on_node, scope="node")
(False, True)
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from models.codec import decode
from models.errors import RecordError
from models.records import AlertTransition, Anomaly, Incident

from collectors.simulator.errors import LabelsError

__all__ = ["Detection", "Score", "read_labels", "matches", "score", "series_days"]

_NOT_CONTAINERS = ("iface:", "volume:", "node:")


def read_labels(path: Path | str) -> list[Incident]:
    """Every incident in a labels file (JSON lines), validated strictly; blank lines are skipped."""
    path = Path(path)
    out = []
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise LabelsError(f"cannot read labels file {path}: {exc}") from exc
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            out.append(decode(Incident, line))
        except RecordError as exc:
            raise LabelsError(f"{path}:{n}: {exc.reason}") from exc
    return out


def _blank(v: str | None) -> str | None:
    return None if v in (None, "", "-") else v


@dataclass(frozen=True, slots=True)
class Detection:
    """Something a detector or rule flagged: where (series parts) and when."""

    at: datetime
    cluster: str
    node: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    """A container name; interface and volume slots (``iface:eth0``, ``volume:data``) are not containers."""
    metric: str | None = None
    source: str = ""

    @property
    def series(self) -> tuple[str | None, ...]:
        return (self.cluster, self.node if self.pod is None else None, self.namespace, self.pod, self.container, self.metric)

    @classmethod
    def from_series(cls, series_id: str, at: datetime, *, source: str = "", node: str | None = None) -> Detection:
        """From a series id (``cluster/namespace/pod/container/metric``, see models.series)."""
        cluster, namespace, pod, container, metric = series_id.split("/", 4)
        if pod.startswith("node:"):
            return cls(at=at, cluster=cluster, node=pod[5:], metric=metric, source=source)
        cont = _blank(container)
        if cont is not None and cont.startswith(_NOT_CONTAINERS):
            cont = None
        return cls(at=at, cluster=cluster, node=node, namespace=_blank(namespace), pod=_blank(pod), container=cont, metric=metric, source=source)

    @classmethod
    def from_anomaly(cls, a: Anomaly) -> Detection:
        d = cls.from_series(a.series_id, a.timestamp, source=f"anomaly:{a.detector}", node=a.node)
        return d

    @classmethod
    def from_alert(cls, a: AlertTransition) -> Detection | None:
        """A firing transition's detection (None for ``resolved``), from its labels.

        Uses the labels ``cluster``, ``node``, ``namespace``, ``pod``,
        ``container``, ``metric`` and, when present, ``series_id``.
        """
        if a.status != "firing":
            return None
        lb = a.labels
        source = f"alert:{lb.get('alertname', a.rule)}"
        if "series_id" in lb:
            d = cls.from_series(lb["series_id"], a.starts_at, source=source, node=_blank(lb.get("node")))
            return d
        cont = _blank(lb.get("container"))
        if cont is not None and cont.startswith(_NOT_CONTAINERS):
            cont = None
        return cls(
            at=a.starts_at,
            cluster=lb.get("cluster", ""),
            node=_blank(lb.get("node")),
            namespace=_blank(lb.get("namespace")),
            pod=_blank(lb.get("pod")),
            container=cont,
            metric=_blank(lb.get("metric")),
            source=source,
        )


Scope = Literal["entity", "node"]


def matches(
    inc: Incident, d: Detection, *, before_s: float = 0.0, after_s: float = 300.0, match_metric: bool = False,
    scope: Scope = "entity",
) -> bool:
    """Whether detection ``d`` is about incident ``inc`` (see the module docstring)."""
    if d.cluster != inc.cluster:
        return False
    if not (inc.start.timestamp() - before_s <= d.at.timestamp() <= inc.end.timestamp() + after_s):
        return False
    if match_metric and d.metric is not None and d.metric not in inc.metrics:
        return False
    on_node = d.node is not None and d.node == inc.node
    if scope == "node":
        if inc.pod is None or d.pod is None:
            return on_node
    elif inc.pod is None:  # a node incident: the node's own series only
        return on_node and d.pod is None
    elif d.pod is None:  # a pod incident seen on its node: only through a metric the incident names
        return on_node and d.metric is not None and d.metric in inc.metrics
    if d.pod != inc.pod or (d.namespace is not None and d.namespace != inc.namespace):
        return False
    return d.container is None or inc.container is None or d.container == inc.container


@dataclass(slots=True)
class Score:
    """How detections compare with the ground truth."""

    incidents: int
    detected: int
    false_alarms: int
    """Episodes of detections that match no incident."""
    delays_scrapes: list[float] = field(default_factory=list)
    """Per detected incident: (first matching detection - start) / interval, at least 0."""
    series_days: float | None = None
    per_kind: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Kind -> (detected, injected)."""
    missed: list[str] = field(default_factory=list)
    """Ids of the incidents nothing matched."""

    @property
    def detection_rate(self) -> float | None:
        return self.detected / self.incidents if self.incidents else None

    @property
    def median_delay_scrapes(self) -> float | None:
        return statistics.median(self.delays_scrapes) if self.delays_scrapes else None

    @property
    def false_alarms_per_series_day(self) -> float | None:
        return self.false_alarms / self.series_days if self.series_days else None

    def as_dict(self) -> dict[str, object]:
        return {
            "incidents": self.incidents,
            "detected": self.detected,
            "detection_rate": self.detection_rate,
            "median_delay_scrapes": self.median_delay_scrapes,
            "false_alarms": self.false_alarms,
            "false_alarms_per_series_day": self.false_alarms_per_series_day,
            "per_kind": {k: {"detected": d, "injected": n} for k, (d, n) in self.per_kind.items()},
            "missed": self.missed,
        }


def series_days(series: int, start: datetime, end: datetime) -> float:
    """``series`` observed from ``start`` to ``end``, in series-days (the false-alarm denominator)."""
    return series * max(0.0, (end - start).total_seconds()) / 86400


def score(
    incidents: Sequence[Incident],
    detections: Iterable[Detection],
    *,
    interval_s: float = 15.0,
    series_days: float | None = None,
    before_s: float = 0.0,
    after_s: float = 300.0,
    match_metric: bool = False,
    episode_gap_s: float = 300.0,
    scope: Scope = "entity",
) -> Score:
    """Detection rate, median delay in scrapes and false alarms (per series-day when ``series_days`` is given)."""
    dets = sorted(detections, key=lambda d: d.at)
    first: dict[str, datetime] = {}
    unmatched: list[Detection] = []
    for d in dets:
        hit = False
        for inc in incidents:
            if matches(inc, d, before_s=before_s, after_s=after_s, match_metric=match_metric, scope=scope):
                hit = True
                first.setdefault(inc.incident_id, d.at)
        if not hit:
            unmatched.append(d)
    last_seen: dict[tuple[str | None, ...], float] = {}
    episodes = 0
    for d in unmatched:
        key, at = d.series, d.at.timestamp()
        if key not in last_seen or at - last_seen[key] > episode_gap_s:
            episodes += 1
        last_seen[key] = at
    per_kind: dict[str, tuple[int, int]] = {}
    delays = []
    missed = []
    for inc in incidents:
        got, total = per_kind.get(inc.kind, (0, 0))
        at = first.get(inc.incident_id)
        if at is None:
            missed.append(inc.incident_id)
        else:
            delays.append(max(0.0, (at - inc.start).total_seconds() / interval_s))
        per_kind[inc.kind] = (got + (at is not None), total + 1)
    return Score(
        incidents=len(incidents),
        detected=len(first),
        false_alarms=episodes,
        delays_scrapes=delays,
        series_days=series_days,
        per_kind=per_kind,
        missed=missed,
    )
