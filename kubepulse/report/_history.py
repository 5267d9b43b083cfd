"""What the analyses read: hourly rollup statistics per entity, as numpy arrays (no Elasticsearch in here).

``kubepulse.report._queries`` fills these from the ``<prefix>-rollups-1h`` indices; tests and the
analyses build them from :class:`~models.records.EntityRollup` records with :func:`from_rollups`, so
the analysis is tested on exactly what the pipeline publishes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from models.records import EntityRollup

__all__ = ["Hourly", "EntityHistory", "from_rollups", "STATS"]

STATS = ("min", "max", "mean", "last", "count")
"""The statistics of a rollup the analyses use (``sum`` is mean times count)."""


@dataclass(slots=True)
class Hourly:
    """One metric of one entity, hour by hour (oldest first): each hour's start (epoch s) and statistics."""

    start: np.ndarray
    min: np.ndarray
    max: np.ndarray
    mean: np.ndarray
    last: np.ndarray
    count: np.ndarray

    @classmethod
    def from_rows(cls, rows: list[tuple[float, float, float, float, float, float]]) -> Hourly:
        rows = sorted(rows)
        a = np.asarray(rows, dtype=float).reshape(-1, 6)
        return cls(a[:, 0], a[:, 1], a[:, 2], a[:, 3], a[:, 4], a[:, 5])

    def __len__(self) -> int:
        return len(self.start)


@dataclass(slots=True)
class EntityHistory:
    """The hourly history of one entity: its identity (as in the rollups) and each metric's :class:`Hourly`."""

    kind: str
    entity_id: str
    cluster: str
    node: str | None = None
    namespace: str | None = None
    workload: str | None = None
    workload_kind: str | None = None
    pod: str | None = None
    container: str | None = None
    volume: str | None = None
    persistentvolumeclaim: str | None = None
    metrics: dict[str, Hourly] = field(default_factory=dict)


def from_rollups(rollups: Iterable[EntityRollup]) -> list[EntityHistory]:
    """Hourly rollups grouped by entity (1-minute ones are ignored), each metric's hours in time order.

    >>> from datetime import datetime, timedelta, timezone
    >>> from models.records import MetricStats
    >>> t = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> r = [EntityRollup(entity_id="c/-/-/-", kind="cluster", cluster="c", window="1h", window_start=t + timedelta(hours=h),
    ...      window_end=t + timedelta(hours=h + 1), metrics={"cluster.cpu_cores": MetricStats(min=1, max=3, mean=2, last=2, sum=8, count=4)})
    ...      for h in (1, 0)]
    >>> (h,) = from_rollups(r)
    >>> h.metrics["cluster.cpu_cores"].start.tolist() == [t.timestamp(), t.timestamp() + 3600]
    True
    """
    rows: dict[str, tuple[EntityRollup, dict[str, list[tuple[float, ...]]]]] = {}
    for r in rollups:
        if r.window != "1h":
            continue
        _, per_metric = rows.setdefault(r.entity_id, (r, {}))
        ts = r.window_start.timestamp()
        for name, s in r.metrics.items():
            per_metric.setdefault(name, []).append((ts, s.min, s.max, s.mean, s.last, float(s.count)))
    out = []
    for entity_id, (r, per_metric) in rows.items():
        out.append(
            EntityHistory(
                kind=r.kind, entity_id=entity_id, cluster=r.cluster, node=r.node, namespace=r.namespace, workload=r.workload,
                workload_kind=r.workload_kind, pod=r.pod, container=r.container, volume=r.volume,
                persistentvolumeclaim=r.persistentvolumeclaim,
                metrics={m: Hourly.from_rows(v) for m, v in per_metric.items()},  # type: ignore[arg-type]
            )
        )
    return out
