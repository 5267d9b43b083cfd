"""HorizontalPodAutoscalers from the API server's list (autoscaling/v2), as AutoscalerScrape records (kubepulse.autoscalers.v1).

Listed once per pass beside the ResourceQuotas, for the same reason: a cluster has one HPA per scaled
workload at most, so one paged list is cheap, and each pass states what every HPA targets now.
Right-sizing reads them: a request that an HPA's utilization target divides by is not cut.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import ValidationError

from collectors._inventory import quantity
from collectors.errors import MalformedPayload
from models.records import AutoscalerMetric, AutoscalerScrape

__all__ = ["parse_autoscaler"]

_SOURCE_KEY = {"Resource": "resource", "ContainerResource": "containerResource", "Pods": "pods", "Object": "object", "External": "external"}


def _metric(m: dict[str, Any]) -> AutoscalerMetric:
    kind = m["type"]
    src = m.get(_SOURCE_KEY.get(kind, ""), {}) or {}
    target = src.get("target") or {}
    value = target.get("averageValue") if target.get("type") == "AverageValue" else target.get("value")
    return AutoscalerMetric(
        type=kind,
        resource=src.get("name") if kind in ("Resource", "ContainerResource") else None,
        container=src.get("container"),
        target_type=target.get("type"),
        target_average_utilization=target.get("averageUtilization"),
        target_average_value=None if value is None else quantity(str(value)),
        metric_name=(src.get("metric") or {}).get("name"),
    )


def parse_autoscaler(obj: dict[str, Any], *, cluster: str, at: datetime) -> AutoscalerScrape:
    """One autoscaling/v2 HorizontalPodAutoscaler as an :class:`AutoscalerScrape` at ``at``; raises :class:`MalformedPayload`.

    >>> from datetime import timezone
    >>> a = parse_autoscaler(
    ...     {"metadata": {"namespace": "shop", "name": "cart"},
    ...      "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "cart"}, "minReplicas": 2, "maxReplicas": 8,
    ...               "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]},
    ...      "status": {"currentReplicas": 3, "desiredReplicas": 4}},
    ...     cluster="prod", at=datetime(2026, 1, 1, tzinfo=timezone.utc))
    >>> (a.key, a.target_name, a.metrics[0].resource, a.metrics[0].target_average_utilization, a.desired_replicas)
    ('prod/shop/cart', 'cart', 'cpu', 70, 4)
    """
    try:
        meta, spec = obj["metadata"], obj["spec"]
        namespace, name = meta["namespace"], meta["name"]
        ref = spec["scaleTargetRef"]
    except (KeyError, TypeError) as exc:
        raise MalformedPayload(f"cluster {cluster}: a HorizontalPodAutoscaler without metadata or spec.scaleTargetRef: {exc!r}") from exc
    what = f"cluster {cluster}: HorizontalPodAutoscaler {namespace}/{name}"
    status = obj.get("status") or {}
    try:
        # autoscaling/v2 defaults: no metrics means 80 % average CPU utilization (the API server fills it in).
        metrics = [_metric(m) for m in spec.get("metrics") or []]
        return AutoscalerScrape(
            cluster=cluster, namespace=namespace, name=name, timestamp=at, target_kind=ref["kind"], target_name=ref["name"],
            min_replicas=spec.get("minReplicas", 1), max_replicas=spec["maxReplicas"], current_replicas=status.get("currentReplicas"),
            desired_replicas=status.get("desiredReplicas"), metrics=metrics,
        )
    except (KeyError, TypeError, ValueError) as exc:
        detail = exc.errors()[0] if isinstance(exc, ValidationError) else exc
        raise MalformedPayload(f"{what}: {detail}") from exc
