"""Builders shared by the rule engine's unit tests (entities, events, anomalies, a clock); no tests here."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from models.records import Anomaly, KubeEvent, ObjectRef
from models.series import Entity
from streams.rules import RuleEngine, parse_rules

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def engine(yaml_text: str, **kw: object) -> RuleEngine:
    return RuleEngine(parse_rules(yaml_text, file="test.yaml"), **kw)  # type: ignore[arg-type]


def container(metrics: dict[str, float | None], *, ns: str = "shop", pod: str = "cart-1", name: str = "cart", node: str = "n1") -> Entity:
    labels = {"cluster": "c1", "node": node, "namespace": ns, "pod": pod, "workload": "cart", "workload_kind": "Deployment", "container": name}
    return Entity("container", f"c1/{ns}/{pod}/{name}/", labels, list(metrics.items()))


def volume(used: float, capacity: float, *, pvc: str | None = "data-db-0", pod: str = "db-0") -> Entity:
    labels = {"cluster": "c1", "node": "n1", "namespace": "shop", "pod": pod, "volume": "data"}
    if pvc:
        labels["persistentvolumeclaim"] = pvc
    return Entity(
        "volume",
        f"c1/shop/{pod}/volume:data/",
        labels,
        [("volume.used_bytes", used), ("volume.capacity_bytes", capacity), ("volume.used_share", used / capacity)],
    )


def pod_event(reason: str, t: float, *, count: int = 1, uid: str = "ev-1", message: str = "", pod: str = "cart-1", container: str = "cart") -> KubeEvent:
    return KubeEvent(
        cluster="c1",
        uid=uid,
        namespace="shop",
        name=f"{pod}.{uid}",
        reason=reason,
        type="Warning",
        message=message,
        count=count,
        first_seen=at(0),
        last_seen=at(t),
        involved_object=ObjectRef(kind="Pod", name=pod, namespace="shop", field_path=f"spec.containers{{{container}}}"),
    )


def anomaly(t: float, *, score: float = 9.0, metric: str = "container.cpu_cores") -> Anomaly:
    return Anomaly(
        series_id=f"c1/shop/cart-1/cart/{metric}",
        cluster="c1",
        node="n1",
        namespace="shop",
        workload="cart",
        pod="cart-1",
        container="cart",
        metric=metric,
        timestamp=at(t),
        value=3.0,
        baseline=0.5,
        score=score,
        threshold=6.0,
        detector="seasonal-z",
    )
