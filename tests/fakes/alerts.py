"""Builders of AlertTransition and KubeEvent records for the alerting tests."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models import fingerprint
from models.records import AlertTransition, KubeEvent, ObjectRef

__all__ = ["alert", "resolved", "pod_event", "T0"]

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


def alert(
    alertname: str = "PodMemoryHigh",
    *,
    severity: str = "warning",
    cluster: str = "eu-1",
    namespace: str = "shop",
    pod: str | None = "cart-7d9f-abcde",
    workload: str | None = "cart",
    node: str | None = None,
    sequence: int = 1,
    value: float | None = 0.93,
    threshold: float | None = 0.9,
    summary: str | None = None,
    **extra: str,
) -> AlertTransition:
    labels = {"alertname": alertname, "severity": severity, "cluster": cluster, "namespace": namespace, **extra}
    for k, v in (("pod", pod), ("workload", workload), ("node", node)):
        if v:
            labels[k] = v
    return AlertTransition(
        fingerprint=fingerprint(labels),
        status="firing",
        labels=labels,
        annotations={"summary": summary or f"{alertname} on {pod or node or cluster}"},
        starts_at=T0,
        rule=alertname.lower(),
        value=value,
        threshold=threshold,
        sequence=sequence,
        generator_url="http://kubepulse.example/rules/" + alertname.lower(),
    )


def resolved(a: AlertTransition, *, after_s: float = 60) -> AlertTransition:
    return a.model_copy(update={"status": "resolved", "ends_at": a.starts_at + timedelta(seconds=after_s), "sequence": a.sequence + 1})


def pod_event(reason: str, *, pod: str = "cart-7d9f-abcde", namespace: str = "shop", cluster: str = "eu-1", count: int = 1, uid: str | None = None) -> KubeEvent:
    return KubeEvent(
        cluster=cluster,
        uid=uid or f"ev-{reason}-{pod}",
        namespace=namespace,
        name=f"{pod}.{reason.lower()}",
        reason=reason,
        type="Warning",
        message=f"{reason} for container app",
        count=count,
        last_seen=T0,
        involved_object=ObjectRef(kind="Pod", name=pod, namespace=namespace),
    )
