"""Anomaly scores of one node's series: one online detector per scored series, score before learn.

The detectors live in :class:`streams.pipeline.NodeState` (the node's table
entry); ``streams.pipeline`` feeds each sample of a scored metric here and
publishes what crosses ``Settings.streams.anomaly_threshold`` to
kubepulse.anomalies.v1. Which metrics are scored is
``Settings.streams.scored_metrics``: counters (``*_total``), capacities and
configured limits carry no behaviour worth a detector.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from models.detectors import make_detector
from models.records import Anomaly
from models.series import METRICS, split_series_id

__all__ = ["scored_metric_names", "new_detector", "anomaly"]


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


def new_detector(name: str) -> Any:
    """A fresh detector; ``"default"`` is the detector models.detectors recommends."""
    if name == "default":
        return make_detector()
    return make_detector(name)


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
