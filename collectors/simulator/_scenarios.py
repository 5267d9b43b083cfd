"""Controlled workloads added to a simulated fleet, whose truth is known, for capacity and right-sizing tests and demos.

The default fleet has none. Each scenario adds one Deployment (its own namespace) to a cluster
when the fleet is laid out, spread over that cluster's nodes, and behaves like any other workload
(diurnal load, noise, restarts, rollouts: a replaced pod keeps the scenario's use):

* :class:`Oversized`: requests ``request_factor`` x what it uses at the daily mean (4 x: the
  right-sizer should recommend about a quarter of them).
* :class:`Growing`: requests and use grow ``growth_per_day`` a day, compounded (2 %: a service
  whose traffic grows), and the namespace's ResourceQuota on ``requests.cpu``, ``requests.memory``
  and ``limits.memory`` is reached ``full_after_days`` after the first step, so days-to-full is known.
* :class:`Autoscaled`: scaled by a HorizontalPodAutoscaler (autoscaling/v2) on CPU utilization of
  ``target_cpu_utilization`` percent, which keeps each replica's CPU near that share of its
  request (the diurnal swing goes into the replica count, so per replica it is small); its memory
  request is ``memory_request_factor`` x its use. :meth:`~collectors.simulator.Fleet.autoscalers`
  gives its HPA as the collector lists it.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from collectors.simulator._build import resources
from collectors.simulator._layout import GiB, MiB, ClusterState, WorkloadState, _C, _workload, new_pod

__all__ = ["Scenario", "Oversized", "Growing", "Autoscaled", "lay_out", "ScenarioState"]


@dataclass(frozen=True, slots=True)
class Oversized:
    namespace: str = "reports"
    name: str = "report-builder"
    replicas: int = 2
    request_factor: float = 4.0
    cluster: int = 0
    """Index of the fleet's cluster it runs in."""


@dataclass(frozen=True, slots=True)
class Growing:
    namespace: str = "analytics"
    name: str = "event-pipeline"
    replicas: int = 2
    growth_per_day: float = 0.02
    full_after_days: float = 34.0
    use_share: float = 0.5
    """Use at the daily mean as a share of the requests (both grow)."""
    cluster: int = 0


@dataclass(frozen=True, slots=True)
class Autoscaled:
    namespace: str = "web"
    name: str = "web-api"
    replicas: int = 3
    target_cpu_utilization: int = 60
    memory_request_factor: float = 4.0
    min_replicas: int = 2
    max_replicas: int = 10
    cluster: int = 0


Scenario = Oversized | Growing | Autoscaled

_SPECS: tuple[_C, ...] = (("app", 1.0, 1.0, True, True),)


@dataclass(slots=True)
class ScenarioState:
    """A scenario as laid out: its workload, and for growth the amounts it started from."""

    scenario: Scenario
    cluster: ClusterState
    workload: WorkloadState
    origin_t: float
    base_requests: list[tuple[float, int, float | None, int | None]] = field(default_factory=list)
    base_use: dict[int, tuple[float, int]] = field(default_factory=dict)

    def update(self, t: float) -> None:
        """Scale a growing workload's requests and use to ``t`` (``(1 + g) ** days`` since the first step)."""
        sc = self.scenario
        if not isinstance(sc, Growing):
            return
        f = (1.0 + sc.growth_per_day) ** ((t - self.origin_t) / 86400.0)
        wl = self.workload
        reqs = []
        for req_cpu, req_mem, lim_cpu, lim_mem in self.base_requests:
            cpu, mem = req_cpu * f, int(req_mem * f)
            lc = None if lim_cpu is None else lim_cpu * f
            lm = None if lim_mem is None else int(lim_mem * f)
            reqs.append((resources(cpu, mem), resources(lc, lm), cpu, mem, lc, lm))
        wl.container_requests = reqs
        wl.pod_requests = resources(sum(r[2] for r in reqs), sum(r[3] for r in reqs))
        wl.pod_limits = resources(sum(r[4] or 0.0 for r in reqs), sum(r[5] or 0 for r in reqs))
        for pod in wl.pods:
            for i, c in enumerate(pod.containers):
                req, lim, c.req_cpu, c.req_mem, c.lim_cpu, c.lim_mem = reqs[i]
                c.requests, c.limits = req, lim
                cpu0, mem0 = self.base_use.setdefault(id(c), (c.cpu_base / f, int(c.mem_base / f)))
                c.cpu_base, c.mem_base = cpu0 * f, int(mem0 * f)


def _use_share(sc: Scenario) -> tuple[float, float]:
    """(CPU, memory) use at the daily mean as a share of the request."""
    if isinstance(sc, Oversized):
        return 1.0 / sc.request_factor, 1.0 / sc.request_factor
    if isinstance(sc, Growing):
        return sc.use_share, sc.use_share
    return sc.target_cpu_utilization / 100.0, 1.0 / sc.memory_request_factor


def lay_out(rng: random.Random, clusters: list[ClusterState], scenarios: list[Scenario], t: float) -> list[ScenarioState]:
    """Add each scenario's workload and pods to its cluster (the fleet's first step calls this)."""
    out = []
    for sc in scenarios:
        if not 0 <= sc.cluster < len(clusters):
            raise ValueError(f"scenario {sc.name}: the fleet has no cluster #{sc.cluster} (it has {len(clusters)})")
        cl = clusters[sc.cluster]
        nodes = cl.nodes
        cpu_unit = nodes[0].cpu_alloc * 0.05
        mem_unit = nodes[0].mem_alloc * 0.04
        wl = _workload(rng, cl.name, "Deployment", sc.namespace, sc.name, _SPECS, 1.0, cpu_unit, mem_unit)
        wl.use_share = _use_share(sc)
        if isinstance(sc, Autoscaled):
            wl.cpu_amp = 0.05  # the HPA turns the daily swing into replicas; per replica, use stays near its target
        cl.workloads.append(wl)
        for k in range(sc.replicas):
            node = nodes[k % len(nodes)]
            pod = new_pod(rng, wl, node, k, t, fresh=False)
            wl.pods.append(pod)
            node.pods.append(pod)
        state = ScenarioState(sc, cl, wl, t)
        state.base_requests = [(r[2], r[3], r[4], r[5]) for r in wl.container_requests]
        out.append(state)
    return out


def growing_quota(state: ScenarioState) -> dict[str, float]:
    """The hard limits of a growing namespace's quota: what it requests at the first step, grown for ``full_after_days``."""
    sc = state.scenario
    assert isinstance(sc, Growing)
    f = (1.0 + sc.growth_per_day) ** sc.full_after_days
    wl = state.workload
    n = len(wl.pods)
    req_cpu = sum(r[0] for r in state.base_requests) * n
    req_mem = sum(r[1] for r in state.base_requests) * n
    lim_mem = sum(r[3] or 0 for r in state.base_requests) * n
    return {
        "requests.cpu": round(req_cpu * f, 3),
        "requests.memory": float(math.ceil(req_mem * f / MiB) * MiB),
        "limits.cpu": round(sum(r[2] or 0.0 for r in state.base_requests) * n * f * 2, 3),
        "limits.memory": float(math.ceil(lim_mem * f / MiB) * MiB),
        "pods": 10.0 + n,
    }


_ = GiB  # the unit the catalogue is written in (kept for readers of the numbers above)
