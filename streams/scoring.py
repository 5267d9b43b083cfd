"""Anomaly scores of one node's series: one online detector per scored series, score before learn.

The detectors live in :class:`streams.pipeline.NodeState` (the node's table
entry); ``streams.pipeline`` feeds each sample of a scored metric here and
publishes what crosses ``Settings.streams.anomaly_threshold`` to
kubepulse.anomalies.v1. Which metrics are scored is
``Settings.streams.scored_metrics``: counters (``*_total``), capacities and
configured limits carry no behaviour worth a detector, and neither do logs
filling a container's writable layer or its node's image filesystem until
they rotate (the predicted-exhaustion rules watch those).

How a detector is made (:func:`new_detector`): the NAB-validated default of
``models.detectors``, given what the worker knows and NAB does not, the
series' unit. ``resolution`` is the smallest change worth a look in that
unit (:data:`RESOLUTIONS`), so one dropped packet on an interface that never
drops any (``rx_errors_per_s`` 0 -> 0.0667) is not an infinite surprise, and
``spike`` lets one scrape far outside the forecast alarm at once instead of
after the five or so scrapes the likelihood needs to build up.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from datetime import datetime
from typing import Any

from models.detectors import DEFAULT_DETECTOR, make_detector
from models.records import Anomaly, NodeScrape
from models.series import METRICS, entities, split_series_id

__all__ = ["RESOLUTIONS", "STREAMS_PARAMS", "scored_metric_names", "scored_samples", "new_detector", "resolution",
           "anomaly"]

RESOLUTIONS: tuple[tuple[str, float], ...] = (
    ("_errors_per_s", 1.0),  # one error a second: below it, a dropped packet now and then
    ("_bytes_per_s", 1024.0),  # 1 KiB/s of traffic
    ("_bytes", 1024.0 * 1024.0),  # 1 MiB of memory or disk
    ("_cores", 0.001),  # a millicore, the API's own resolution of CPU
    ("_share", 0.001),  # a tenth of a percent of a request, limit, node or filesystem
)
"""Metric-name suffix (the unit, see models.series) -> the smallest change in that unit worth an anomaly."""

STREAMS_PARAMS: dict[str, float] = {"spike": 5.0}
"""What the worker's default detector adds to the NAB-validated defaults (see the module docstring)."""


def resolution(metric: str) -> float:
    """The error-scale floor of a metric, from the unit in its name (0 when the name gives none).

    >>> resolution("pod.network.rx_errors_per_s"), resolution("container.cpu_cores"), resolution("quota.used")
    (1.0, 0.001, 0.0)
    """
    for suffix, value in RESOLUTIONS:
        if metric.endswith(suffix):
            return value
    return 0.0


def scored_metric_names(selectors: Iterable[str]) -> frozenset[str]:
    """Full metric names selected by ``selectors``: a full name, or a field name matching every entity.

    >>> sorted(scored_metric_names(["used_share", "pod.cpu_cores"]))[:3]
    ['container.rootfs.used_share', 'node.fs.used_share', 'pod.cpu_cores']
    """
    every = {m for names in METRICS.values() for m in names}
    sel = set(selectors)
    unknown = sorted(s for s in sel if s not in every and not any(m.rsplit(".", 1)[-1] == s for m in every))
    if unknown:
        raise ValueError(f"scored_metrics names no metric: {unknown}; metric names are in models.series.METRICS")
    return frozenset(m for m in every if m in sel or m.rsplit(".", 1)[-1] in sel)


def scored_samples(scrape: NodeScrape, scored: frozenset[str]) -> Iterator[tuple[str, str, float]]:
    """``(series id, metric, value)`` of every sample of ``scrape`` that gets a detector (values that are not None).

    The worker walks the scrape its own faster way (``streams.pipeline``); benchmarks and tests use this.
    """
    for ent in entities(scrape):
        prefix = ent.prefix
        for metric, v in ent.metrics:
            if v is not None and metric in scored:
                yield prefix + metric, metric, v


def new_detector(name: str, *, metric: str | None = None) -> Any:
    """A fresh detector for one series; ``"default"`` is models.detectors' default as the worker runs it.

    With ``metric`` (the series' metric name) the default gets its unit's
    :func:`resolution` and :data:`STREAMS_PARAMS`; without one it is the plain
    default (``spike`` without a resolution would turn one error on a
    counter that is always 0 into a score of billions). Any detector named
    explicitly is made with its own defaults, as ``kubepulse detect replay``
    makes it.

    >>> det = new_detector("default", metric="pod.network.rx_errors_per_s")
    >>> det.name, det.params()["resolution"], det.params()["spike"]
    ('seasonal_lik', 1.0, 5.0)
    >>> new_detector("seasonal_z", metric="pod.cpu_cores").params()["resolution"]
    0.0
    """
    if name != "default":
        return make_detector(name)
    if metric is None:
        return make_detector(DEFAULT_DETECTOR)
    return make_detector(DEFAULT_DETECTOR, resolution=resolution(metric), **STREAMS_PARAMS)


def anomaly(sid: str, *, node: str, ts: datetime, value: float, baseline: float | None, score: float,
            threshold: float, detector: str, workloads: dict[str, str]) -> Anomaly:
    """The Anomaly record of one scored point (built without re-validation: every field is ours)."""
    cluster, namespace, pod, container, metric = split_series_id(sid)
    node_series = pod.startswith("node:")
    return Anomaly.model_construct(
        series_id=sid,
        cluster=cluster,
        node=node,
        namespace=None if namespace == "-" else namespace,
        workload=None if node_series else workloads.get(f"{cluster}/{namespace}/{pod}/"),
        pod=None if pod == "-" or node_series else pod,
        container=None if container == "-" else container,
        metric=metric,
        timestamp=ts,
        value=value,
        baseline=baseline if baseline is None or baseline == baseline else None,
        score=score,
        threshold=threshold,
        detector=detector,
        schema_version=1,
    )
