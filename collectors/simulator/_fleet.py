"""The pure generator: a fleet of clusters whose ``step(now)`` returns node scrapes, events and injected incidents.

``quotas()`` then gives the ResourceQuotas as of that step (one ``compute``
quota per cluster and namespace, see ``collectors.simulator._quotas``): a
method of its own so the callers of ``step`` keep their three-tuple, and
free of random draws, so calling it or not changes no other record.

Deterministic for a seed and a sequence of timestamps; it never sleeps and
never talks to Kafka (``collectors.simulator._publish`` does), so tests and
benchmarks can run it as fast as they like in simulated time.

Values are derived the way the real collector derives them from kubelet's
Summary API: CPU cores are the rate of a cumulative CPU-seconds counter
between two scrapes (None on a series' first scrape and across a restart),
network rates likewise from byte and error counters, shares are usage over
request, limit (None without a limit) and node allocatable, the working set
is what is compared with the memory limit.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Literal

from models.records import AutoscalerMetric, AutoscalerScrape, Incident, KubeEvent, NodeScrape, QuotaScrape
from models.settings import SimulatorSettings

from collectors.simulator._events import EventFactory
from collectors.simulator._incidents import (
    DEFAULT_DURATION_S,
    INCIDENT_EFFECTS,
    KINDS,
    ActiveIncident,
    IncidentKind,
    IncidentPlan,
    round_duration,
)
from collectors.simulator._layout import (
    MiB,
    ClusterState,
    ContainerState,
    NodeState,
    PodState,
    _suffix,
    build_clusters,
    new_pod,
)
from collectors.simulator._quotas import quota_hard, quota_records
from collectors.simulator._scrape import scrape_node
from collectors.simulator._scenarios import Autoscaled, Growing, Scenario, ScenarioState, growing_quota, lay_out
from collectors.simulator.errors import SimulatorError

__all__ = ["Fleet", "StepResult"]

StepResult = tuple[list[NodeScrape], list[KubeEvent], list[Incident]]

_TAU = 2 * math.pi
_PEAK = 14 / 24
"""Load peaks at 14:00 local time and bottoms out at 02:00."""
_SETTLED_S = 1800.0
"""Incidents pick pods and containers running for at least this long (past detectors' warm-up)."""


def _poisson(rng: random.Random, lam: float) -> int:
    """Knuth's method: fine for the small rates of restarts and rollouts per step."""
    if lam <= 0:
        return 0
    limit, k, p = math.exp(-min(lam, 50.0)), 0, rng.random()
    while p > limit:
        k += 1
        p *= rng.random()
    return k


class Fleet:
    """A simulated fleet of ``clusters`` x ``nodes_per_cluster`` x ``pods_per_node`` with injected incidents.

    Parameters default to ``settings`` (``Settings.simulator``) and explicit
    keyword arguments override them. ``incidents`` is ``"cycle"`` (kinds in
    turn), ``"random"`` (kinds drawn with the seed) or ``"none"``; one is
    injected every ``incident_every_s`` simulated seconds, the first one
    ``incident_every_s`` after the first step (a warm-up for detectors).
    ``inject`` adds incidents of a given kind at a given offset.

    >>> from datetime import datetime, timedelta, timezone
    >>> fleet = Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=3, seed=7, incidents="none")
    >>> t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> scrapes, events, incidents = fleet.step(t0)
    >>> [s.key for s in scrapes]
    ['prod-eu-west/ip-10-0-0-10.ec2.internal', 'prod-eu-west/ip-10-0-0-11.ec2.internal']
    >>> scrapes[0].pods[0].containers[0].cpu_cores is None  # a rate needs two scrapes
    True
    >>> fleet.step(t0 + timedelta(seconds=15))[0][0].pods[0].containers[0].cpu_cores > 0
    True
    >>> [(q.key, q.timestamp == t0 + timedelta(seconds=15)) for q in fleet.quotas()][:2]
    [('prod-eu-west/kube-system/compute', True), ('prod-eu-west/payments/compute', True)]
    """

    def __init__(
        self,
        settings: SimulatorSettings | None = None,
        *,
        clusters: int | None = None,
        nodes_per_cluster: int | None = None,
        pods_per_node: int | None = None,
        seed: int | None = None,
        interval_s: float | None = None,
        incident_every_s: float | None = None,
        incidents: Literal["cycle", "random", "none"] = "cycle",
        inject: Sequence[IncidentPlan] = (),
        diurnal_period_s: float | None = None,
        incident_duration_s: float | None = None,
        containers_per_pod: int | None = None,
        restart_every_s: float | None = 7 * 86400,
        rollout_every_s: float | None = 8 * 3600,
        scenarios: Sequence[Scenario] = (),
    ) -> None:
        s = settings or SimulatorSettings()
        self.clusters = clusters if clusters is not None else s.clusters
        self.nodes_per_cluster = nodes_per_cluster if nodes_per_cluster is not None else s.nodes_per_cluster
        self.pods_per_node = pods_per_node if pods_per_node is not None else s.pods_per_node
        self.seed = seed if seed is not None else s.seed
        self.interval_s = float(interval_s if interval_s is not None else s.interval_s)
        self.incident_every_s = float(incident_every_s if incident_every_s is not None else s.incident_every_s)
        self.diurnal_period_s = float(diurnal_period_s if diurnal_period_s is not None else s.diurnal_period_s)
        for name, value in (("clusters", self.clusters), ("nodes_per_cluster", self.nodes_per_cluster), ("pods_per_node", self.pods_per_node)):
            if value < 1:
                raise SimulatorError(f"{name} must be at least 1 (got {value})")
        if min(self.interval_s, self.incident_every_s, self.diurnal_period_s) <= 0:
            raise SimulatorError("interval_s, incident_every_s and diurnal_period_s must be positive")
        if incidents not in ("cycle", "random", "none"):
            raise SimulatorError(f"incidents must be cycle, random or none (got {incidents!r})")
        if containers_per_pod is not None and not 1 <= containers_per_pod <= 10:
            raise SimulatorError(f"containers_per_pod must be 1..10 (got {containers_per_pod})")
        if incident_duration_s is not None and incident_duration_s <= 0:
            raise SimulatorError("incident_duration_s must be positive")
        self.incidents_mode = incidents
        self.incident_duration_s = incident_duration_s
        self.containers_per_pod = containers_per_pod
        self.restart_every_s = restart_every_s
        self.rollout_every_s = rollout_every_s
        self._plans = sorted(inject, key=lambda p: p.at_s)
        self._scenario_plans = list(scenarios)
        self.scenarios: list[ScenarioState] = []
        # Separate streams, so an injected incident does not change the noise of everything else.
        self._layout_rng = random.Random(f"kubepulse-sim:{self.seed}:layout")
        self._rng = random.Random(f"kubepulse-sim:{self.seed}:noise")
        self._chaos = random.Random(f"kubepulse-sim:{self.seed}:incidents")
        self.events = EventFactory(random.Random(f"kubepulse-sim:{self.seed}:events"))
        self._quota_rng = random.Random(f"kubepulse-sim:{self.seed}:quotas")
        self._quota_hard: dict[tuple[str, str], dict[str, float]] = {}
        self._ts: datetime | None = None
        self._clusters: list[ClusterState] = []
        self._t: float | None = None
        self._origin: float | None = None
        self._next_due = 0.0
        self._n_incidents = 0
        self._cycle = 0
        self.active: list[ActiveIncident] = []

    # ------------------------------------------------------------------ public
    @property
    def cluster_states(self) -> list[ClusterState]:
        """The fleet's clusters (empty before the first step, which lays the fleet out)."""
        return self._clusters

    def step(self, now: datetime) -> StepResult:
        """One scrape of every node at ``now``: (node scrapes, events, incidents injected now)."""
        if now.tzinfo is None or now.utcoffset() is None:
            raise SimulatorError(f"step needs a timezone-aware timestamp (got naive {now.isoformat()})")
        ts = now.astimezone(timezone.utc)
        t = ts.timestamp()
        if self._t is None:
            self._origin = t
            self._next_due = t + self.incident_every_s
            self._clusters = build_clusters(
                self._layout_rng,
                clusters=self.clusters,
                nodes_per_cluster=self.nodes_per_cluster,
                pods_per_node=self.pods_per_node,
                containers_per_pod=self.containers_per_pod,
                t=t,
            )
            # Scenarios draw from a stream of their own: a fleet with none is exactly the fleet it always was.
            self.scenarios = lay_out(random.Random(f"kubepulse-sim:{self.seed}:scenarios"), self._clusters, self._scenario_plans, t)
            self._quota_hard = quota_hard(self._quota_rng, self._clusters)
            for st in self.scenarios:
                if isinstance(st.scenario, Growing):
                    self._quota_hard[(st.cluster.name, st.scenario.namespace)] = growing_quota(st)
            dt = None
        else:
            if t <= self._t:
                raise SimulatorError(f"timestamps must increase: {ts.isoformat()} is not after the previous step")
            dt = t - self._t
        events: list[KubeEvent] = []
        injected = self._inject_due(t, ts)
        if dt is not None:
            events.extend(self._churn(t, ts, dt))
        still = []
        for inc in self.active:
            evs, done = inc.apply(t, ts, self)
            events.extend(evs)
            if not done:
                still.append(inc)
        self.active = still
        for st in self.scenarios:
            st.update(t)
        scrapes = []
        for cl in self._clusters:
            frac = ((t + cl.utc_offset_s) % self.diurnal_period_s) / self.diurnal_period_s
            s_day = math.cos(_TAU * (frac - _PEAK))
            for node in cl.nodes:
                scrapes.append(self._scrape(cl, node, t, dt, ts, s_day))
        self._t = t
        self._ts = ts
        return scrapes, events, injected

    def quotas(self) -> list[QuotaScrape]:
        """The ResourceQuotas as of the last step, stamped with its time: one ``compute`` quota per cluster and namespace.

        ``used`` is what that step's pods request (the sums of the node
        scrapes' pod requests and container limits, and the pod count);
        ``hard`` was set when the first step laid the fleet out.
        """
        if self._ts is None:
            raise SimulatorError("quotas() needs a step first: the first step lays the fleet out")
        return quota_records(self._clusters, self._quota_hard, self._ts)

    @property
    def has_autoscalers(self) -> bool:
        """Whether the fleet has HPAs (an :class:`~collectors.simulator.Autoscaled` scenario), known before the first step."""
        return any(isinstance(sc, Autoscaled) for sc in self._scenario_plans)

    def autoscalers(self) -> list[AutoscalerScrape]:
        """The HorizontalPodAutoscalers as of the last step: one per :class:`~collectors.simulator.Autoscaled` scenario."""
        if self._ts is None:
            raise SimulatorError("autoscalers() needs a step first: the first step lays the fleet out")
        out = []
        for st in self.scenarios:
            sc = st.scenario
            if not isinstance(sc, Autoscaled):
                continue
            n = len(st.workload.pods)
            out.append(
                AutoscalerScrape(
                    cluster=st.cluster.name, namespace=sc.namespace, name=sc.name, timestamp=self._ts, source="simulator",
                    target_kind="Deployment", target_name=sc.name, min_replicas=sc.min_replicas, max_replicas=sc.max_replicas,
                    current_replicas=n, desired_replicas=n,
                    metrics=[AutoscalerMetric(type="Resource", resource="cpu", target_type="Utilization",
                                              target_average_utilization=sc.target_cpu_utilization)],
                )
            )
        return out

    # --------------------------------------------------------- for incidents
    def restart(self, c: ContainerState, t: float, reason: str, *, times: int = 1) -> None:
        """The container died and kubelet started it again: its counters begin from zero."""
        c.restart_count += times
        c.last_reason = reason
        c.started_t = t
        c.cpu_total = 0.0
        c.prev_cpu_total = None
        c.faults = 0
        c.major_faults = 0
        c.mem_jitter = 0.0
        c.rootfs_used = min(c.rootfs_used, 256 * 1024)  # a new writable layer

    def pid(self) -> int:
        return self._chaos.randint(1000, 4_000_000)

    def evict_for_memory(self, cl: ClusterState, node: NodeState, t: float, ts: datetime, *, available: int) -> list[KubeEvent]:
        """kubelet evicts the pods using most memory above their request, up to two; they are rescheduled elsewhere."""
        victims = [p for p in node.pods if not p.busy and p.workload.kind != "DaemonSet"]
        victims.sort(key=lambda p: (any(c.lim_mem is not None for c in p.containers), -sum(c.mem_base - c.req_mem for c in p.containers)))
        events = []
        for pod in victims[:2]:
            c = max(pod.containers, key=lambda c: c.mem_base)
            msg = (
                f"The node was low on resource: memory. Threshold quantity: 100Mi, available: {available // 1024}Ki. "
                f"Container {c.name} was using {c.mem_base // 1024}Ki, request is {c.req_mem // MiB}Mi, has larger consumption of memory."
            )
            events.append(self.events.pod(cl, pod, "Evicted", msg, ts, type="Warning"))
            others = [n for n in cl.nodes if n is not node and not n.busy] or [node]
            target = min(others, key=lambda n: len(n.pods))
            events.extend(self._replace(cl, pod, t, ts, target=target))
        return events

    # ----------------------------------------------------------------- private
    def _inject_due(self, t: float, ts: datetime) -> list[Incident]:
        out = []
        assert self._origin is not None
        while self._plans and self._origin + self._plans[0].at_s <= t + 1e-6:
            plan = self._plans.pop(0)
            inc = self._activate(plan.kind, t, ts, duration_s=plan.duration_s, cluster=plan.cluster)
            if inc is None:
                raise SimulatorError(
                    f"cannot inject {plan.kind}: no eligible target in "
                    f"{plan.cluster or 'the fleet'} (disk_fill needs StatefulSet pods: use 2+ pods per node; "
                    "every target may already be under an incident)"
                )
            out.append(inc)
        if self.incidents_mode != "none":
            while self._next_due <= t + 1e-6:
                self._next_due += self.incident_every_s
                for _ in range(len(KINDS)):
                    if self.incidents_mode == "cycle":
                        kind = KINDS[self._cycle % len(KINDS)]
                        self._cycle += 1
                    else:
                        kind = self._chaos.choice(KINDS)
                    inc = self._activate(kind, t, ts)
                    if inc is not None:
                        out.append(inc)
                        break
        return out

    def _activate(
        self, kind: IncidentKind, t: float, ts: datetime, *, duration_s: float | None = None, cluster: str | None = None
    ) -> Incident | None:
        clusters = [c for c in self._clusters if cluster in (None, c.name)]
        if not clusters:
            raise SimulatorError(f"no cluster {cluster!r}; the fleet has {', '.join(c.name for c in self._clusters)}")
        cands: list[tuple[ClusterState, NodeState, PodState | None, ContainerState | None]] = []
        for cl in clusters:
            for node in cl.nodes:
                if kind == "node_memory_pressure":
                    if not node.busy and not any(p.busy for p in node.pods):
                        cands.append((cl, node, None, None))
                    continue
                if node.busy:
                    continue
                for pod in node.pods:
                    wl = pod.workload
                    # A target younger than a detector's warm-up would make unfair ground truth.
                    if pod.busy or wl.kind == "DaemonSet" or t - pod.created_t < _SETTLED_S:
                        continue
                    main = pod.containers[0]
                    if t - main.started_t < _SETTLED_S:
                        continue
                    if kind == "memory_leak":
                        limited = [c for c in pod.containers if c.lim_mem is not None]
                        if limited:
                            cands.append((cl, node, pod, limited[0]))
                    elif kind == "disk_fill":
                        if pod.volume is not None:
                            cands.append((cl, node, pod, None))
                    elif kind == "crash_loop":
                        if wl.kind == "Deployment":
                            cands.append((cl, node, pod, main))
                    elif kind == "network_storm":
                        cands.append((cl, node, pod, None))
                    elif main.lim_cpu is None or main.lim_cpu >= 2.5 * main.cpu_base * (1 + wl.cpu_amp):
                        # cpu_spike: a limit barely above the daily peak leaves no room for a clear spike.
                        cands.append((cl, node, pod, main))
        if not cands:
            return None
        cl, node, pod, c = self._chaos.choice(cands)
        dur = round_duration(duration_s or self.incident_duration_s or DEFAULT_DURATION_S[kind], self.interval_s)
        metrics = [m for m in INCIDENT_EFFECTS[kind] if not (m == "container.cpu_limit_share" and c is not None and c.lim_cpu is None)]
        self._n_incidents += 1
        record = Incident(
            incident_id=f"sim{self.seed}-{self._n_incidents:05d}-{kind.replace('_', '-')}",
            kind=kind,
            cluster=cl.name,
            node=node.name,
            namespace=pod.workload.namespace if pod else None,
            pod=pod.name if pod else None,
            container=c.name if c else None,
            metrics=metrics,
            start=ts,
            end=ts + timedelta(seconds=dur),
            seed=self.seed,
        )
        self.active.append(
            ActiveIncident(record, cluster=cl, node=node, pod=pod, container=c, start_t=t, end_t=t + dur, rng=self._chaos)
        )
        return record

    def _churn(self, t: float, ts: datetime, dt: float) -> list[KubeEvent]:
        """Background life of a cluster: a container restarts now and then, Deployments roll out."""
        rng = self._chaos
        events: list[KubeEvent] = []
        for cl in self._clusters:
            if self.restart_every_s:
                pods = [p for n in cl.nodes if not n.busy for p in n.pods if not p.busy]
                n_containers = sum(len(p.containers) for p in pods)
                for _ in range(_poisson(rng, n_containers * dt / self.restart_every_s)):
                    pod = rng.choice(pods)
                    c = rng.choice(pod.containers)
                    self.restart(c, t, "Error")
                    events.append(self.events.pod(cl, pod, "Started", f"Started container {c.name}", ts, container=c.name))
            if self.rollout_every_s:
                deps = [w for w in cl.workloads if w.kind == "Deployment" and not any(p.busy or p.node.busy for p in w.pods)]
                n = min(len(deps), _poisson(rng, len(deps) * dt / self.rollout_every_s))
                for wl in rng.sample(deps, n) if n else ():
                    wl.rs_hash = _suffix(rng, 10)
                    events.append(
                        self.events.workload(
                            cl, wl, "ScalingReplicaSet", f"Scaled up replica set {wl.name}-{wl.rs_hash} to {len(wl.pods)}", ts,
                            component="deployment-controller",
                        )
                    )
                    for pod in list(wl.pods):
                        events.extend(self._replace(cl, pod, t, ts, target=pod.node))
        return events

    def _replace(self, cl: ClusterState, old: PodState, t: float, ts: datetime, *, target: NodeState) -> list[KubeEvent]:
        """``old`` goes away and its controller creates a new pod (a new name, except for a StatefulSet) on ``target``."""
        wl = old.workload
        ordinal = int(old.name.rsplit("-", 1)[1]) if wl.kind == "StatefulSet" else 0
        new = new_pod(self._chaos, wl, target, ordinal, t, fresh=True)
        if old.volume is not None and new.volume is not None:
            new.volume = old.volume  # the PVC outlives the pod
        wl.pods[wl.pods.index(old)] = new
        old.node.pods.remove(old)
        target.pods.append(new)
        main = new.containers[0].name
        return [
            self.events.pod(cl, old, "Killing", f"Stopping container {old.containers[0].name}", ts, container=old.containers[0].name),
            self.events.pod(cl, new, "Scheduled", f"Successfully assigned {wl.namespace}/{new.name} to {target.name}", ts, component="default-scheduler"),
            self.events.pod(cl, new, "Started", f"Started container {main}", ts, container=main),
        ]

    def _scrape(self, cl: ClusterState, node: NodeState, t: float, dt: float | None, ts: datetime, s_day: float) -> NodeScrape:
        return scrape_node(self._rng, cl, node, t, dt, ts, s_day)
