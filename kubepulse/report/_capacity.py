"""Capacity: for each node, namespace, cluster and volume, when each resource reaches its limit, and how much is idle.

Pure: hourly histories (``kubepulse.report._history``) and the namespaces' quotas in,
:class:`~models.records.CapacityForecast` records out. What each resource is measured by and against:

=================== ============================== ====================================== ===========================
resource            node                           cluster                                namespace (against quota)
=================== ============================== ====================================== ===========================
cpu_requests        ``node.pods_cpu_request_cores``  ``cluster.cpu_request_cores``          ``requests.cpu``
memory_requests     ``node.pods_memory_request_bytes`` ``cluster.memory_request_bytes``     ``requests.memory``
memory_working_set  ``node.pods_memory_working_set_bytes`` ``cluster.memory_working_set_bytes`` ``limits.memory``
cpu_use             ``node.pods_cpu_cores``          ``cluster.cpu_cores``                  ``limits.cpu``
filesystem          ``node.fs.used_bytes``           (per node)                             (per volume)
=================== ============================== ====================================== ===========================

Nodes and the cluster are measured against allocatable (what pods may get, which is what requests are
scheduled against), a namespace against the smallest ``hard`` of its ResourceQuotas for the resource
(none: no limit, the trend is still reported), a node filesystem and a PersistentVolume against their
capacity. Filesystems are forecast one by one, never summed: a cluster's disks fill one at a time.
The limit is the newest hour's (``last``): a node group that grew since moves the cluster's limit.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np

from kubepulse.report._forecast import forecast
from kubepulse.report._history import EntityHistory, Hourly
from models.records import CapacityForecast

__all__ = ["Quota", "capacity", "RESOURCES"]


@dataclass(frozen=True, slots=True)
class Quota:
    """The binding ResourceQuota of one namespace for one quota resource: its ``hard`` and which quota it is."""

    hard: float
    name: str


@dataclass(frozen=True, slots=True)
class _Spec:
    resource: str
    unit: str
    metric: str
    limit_kind: str
    limit_metric: str | None = None
    """The metric holding the limit (allocatable); for ``capacity`` the used share, capacity = used / share."""
    quota: str | None = None


RESOURCES: dict[str, tuple[_Spec, ...]] = {
    "node": (
        _Spec("cpu_requests", "cores", "node.pods_cpu_request_cores", "allocatable", "node.cpu_allocatable_cores"),
        _Spec("memory_requests", "bytes", "node.pods_memory_request_bytes", "allocatable", "node.memory_allocatable_bytes"),
        _Spec("memory_working_set", "bytes", "node.pods_memory_working_set_bytes", "allocatable", "node.memory_allocatable_bytes"),
        _Spec("cpu_use", "cores", "node.pods_cpu_cores", "allocatable", "node.cpu_allocatable_cores"),
        _Spec("filesystem", "bytes", "node.fs.used_bytes", "capacity", "node.fs.used_share"),
    ),
    "cluster": (
        _Spec("cpu_requests", "cores", "cluster.cpu_request_cores", "allocatable", "cluster.cpu_allocatable_cores"),
        _Spec("memory_requests", "bytes", "cluster.memory_request_bytes", "allocatable", "cluster.memory_allocatable_bytes"),
        _Spec("memory_working_set", "bytes", "cluster.memory_working_set_bytes", "allocatable", "cluster.memory_allocatable_bytes"),
        _Spec("cpu_use", "cores", "cluster.cpu_cores", "allocatable", "cluster.cpu_allocatable_cores"),
    ),
    "namespace": (
        _Spec("cpu_requests", "cores", "namespace.cpu_request_cores", "quota", quota="requests.cpu"),
        _Spec("memory_requests", "bytes", "namespace.memory_request_bytes", "quota", quota="requests.memory"),
        _Spec("memory_working_set", "bytes", "namespace.memory_working_set_bytes", "quota", quota="limits.memory"),
        _Spec("cpu_use", "cores", "namespace.cpu_cores", "quota", quota="limits.cpu"),
    ),
    "volume": (_Spec("filesystem", "bytes", "volume.used_bytes", "capacity", "volume.used_share"),),
}
"""What each entity kind is forecast on (see the module docstring)."""


def _limit(spec: _Spec, h: EntityHistory, quotas: Mapping[tuple[str, str, str], Quota]) -> tuple[float | None, str | None]:
    if spec.limit_kind == "quota":
        q = quotas.get((h.cluster, h.namespace or "", spec.quota or ""))
        return (q.hard, f"{spec.quota} ({q.name})") if q else (None, None)
    series = h.metrics.get(spec.limit_metric or "")
    if series is None or not len(series):
        return None, None
    if spec.limit_kind == "capacity":
        # Capacities have no rollups (they do not change by the hour); the used share of the newest sample
        # is used / capacity of that same sample, so capacity = used / share, exactly.
        used = h.metrics[spec.metric]
        share = float(series.last[-1])
        return (float(used.last[-1]) / share, None) if share > 0 else (None, None)
    return float(series.last[-1]), None


def _one(spec: _Spec, h: EntityHistory, series: Hourly, quotas: Mapping[tuple[str, str, str], Quota], *, at: datetime,
         interval: float, horizon_days: float) -> CapacityForecast:
    limit, limit_name = _limit(spec, h, quotas)
    # Each hour's mean stands at the middle of its hour.
    mid = series.start + 1800.0
    f = forecast(mid, series.mean, limit, interval=interval, horizon_days=horizon_days)
    newest = datetime.fromtimestamp(float(mid[-1]), UTC)
    p95 = float(np.percentile(series.mean, 95))
    current = float(series.mean[-1])
    return CapacityForecast(
        cluster=h.cluster,
        entity_kind=h.kind,  # type: ignore[arg-type]
        entity_id=h.entity_id,
        node=h.node,
        namespace=h.namespace,
        volume=h.volume,
        persistentvolumeclaim=h.persistentvolumeclaim,
        resource=spec.resource,  # type: ignore[arg-type]
        unit=spec.unit,  # type: ignore[arg-type]
        limit_kind=spec.limit_kind if limit is not None else None,  # type: ignore[arg-type]
        limit_name=limit_name,
        limit=limit,
        current=current,
        p95=p95,
        peak=float(series.max.max()),
        idle=None if limit is None else limit - p95,
        used_share=None if not limit else current / limit,
        growth_per_day=f.growth_per_day,
        model=f.model,  # type: ignore[arg-type]
        days_to_full=f.days_to_full,
        days_to_full_low=f.days_to_full_low,
        days_to_full_high=f.days_to_full_high,
        full_at=None if f.days_to_full is None else newest + timedelta(days=f.days_to_full),
        interval=interval,
        horizon_days=horizon_days,
        history_hours=len(series),
        history_start=datetime.fromtimestamp(float(series.start[0]), UTC),
        history_end=datetime.fromtimestamp(float(series.start[-1]) + 3600.0, UTC),
        generated_at=at,
    )


def capacity(
    histories: Iterable[EntityHistory],
    quotas: Mapping[tuple[str, str, str], Quota] | None = None,
    *,
    at: datetime | None = None,
    interval: float = 0.8,
    horizon_days: float = 365.0,
) -> list[CapacityForecast]:
    """One forecast per entity (node, namespace, cluster, volume) and resource it has a history of.

    ``quotas`` maps ``(cluster, namespace, quota resource)`` to the binding :class:`Quota`. ``at`` (the
    report's time, default: the end of the newest hour seen) stamps every record.
    """
    todo = [(spec, h, h.metrics[spec.metric]) for h in histories for spec in RESOURCES.get(h.kind, ())
            if len(h.metrics.get(spec.metric, ()))]
    if at is None:
        ends = [float(s.start[-1]) + 3600.0 for _, _, s in todo]
        at = datetime.fromtimestamp(max(ends), UTC) if ends else datetime.now(UTC)
    quotas = quotas or {}
    out = [_one(spec, h, s, quotas, at=at, interval=interval, horizon_days=horizon_days) for spec, h, s in todo]
    out.sort(key=lambda r: (r.cluster, _KIND_ORDER[r.entity_kind], r.entity_id, r.resource))
    return out


_KIND_ORDER = {"cluster": 0, "namespace": 1, "node": 2, "volume": 3}
