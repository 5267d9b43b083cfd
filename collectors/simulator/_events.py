"""Kubernetes Events as the simulated control plane would record them (kubelet, scheduler, controllers)."""

from __future__ import annotations

import random
from datetime import datetime

from models.records import KubeEvent, ObjectRef

from collectors.simulator._layout import ClusterState, NodeState, PodState, WorkloadState, new_uid

__all__ = ["EventFactory"]


class EventFactory:
    """Makes :class:`KubeEvent` records with the names, uids and resource versions a real API server gives.

    An event that repeats (``BackOff``) keeps its name and uid and bumps
    ``count`` and ``last_seen``, which is how the API server aggregates them.
    """

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng

    def ident(self, obj_name: str) -> tuple[str, str]:
        """A new event's (name, uid): ``<object>.<16 hex>`` like the client-go recorder."""
        return f"{obj_name}.{self._rng.getrandbits(64):016x}", new_uid(self._rng)

    def pod(
        self,
        cluster: ClusterState,
        pod: PodState,
        reason: str,
        message: str,
        ts: datetime,
        *,
        type: str = "Normal",
        container: str | None = None,
        component: str = "kubelet",
        count: int = 1,
        first_seen: datetime | None = None,
        ident: tuple[str, str] | None = None,
    ) -> KubeEvent:
        name, uid = ident or self.ident(pod.name)
        ns = pod.workload.namespace
        return KubeEvent(
            cluster=cluster.name,
            uid=uid,
            namespace=ns,
            name=name,
            reason=reason,
            type=type,
            message=message,
            count=count,
            first_seen=first_seen or ts,
            last_seen=ts,
            involved_object=ObjectRef(
                kind="Pod",
                name=pod.name,
                namespace=ns,
                uid=pod.uid,
                field_path=f"spec.containers{{{container}}}" if container else None,
            ),
            source_component=component,
            source_host=pod.node.name if component == "kubelet" else None,
            resource_version=cluster.next_rv(),
        )

    def node(
        self, cluster: ClusterState, node: NodeState, reason: str, message: str, ts: datetime, *, type: str = "Normal", component: str = "kubelet"
    ) -> KubeEvent:
        name, uid = self.ident(node.name)
        # Node events live in the "default" namespace; the Node itself has none.
        return KubeEvent(
            cluster=cluster.name,
            uid=uid,
            namespace="default",
            name=name,
            reason=reason,
            type=type,
            message=message,
            first_seen=ts,
            last_seen=ts,
            involved_object=ObjectRef(kind="Node", name=node.name, uid=node.name),
            source_component=component,
            source_host=node.name,
            resource_version=cluster.next_rv(),
        )

    def workload(self, cluster: ClusterState, wl: WorkloadState, reason: str, message: str, ts: datetime, *, component: str) -> KubeEvent:
        name, uid = self.ident(wl.name)
        return KubeEvent(
            cluster=cluster.name,
            uid=uid,
            namespace=wl.namespace,
            name=name,
            reason=reason,
            type="Normal",
            message=message,
            first_seen=ts,
            last_seen=ts,
            involved_object=ObjectRef(kind=wl.kind, name=wl.name, namespace=wl.namespace),
            source_component=component,
            resource_version=cluster.next_rv(),
        )
