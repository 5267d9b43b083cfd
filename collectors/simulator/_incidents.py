"""Injected incidents: which series each kind changes, in which direction, and with what shape.

Each kind is sized to be clearly abnormal against the fleet's noise (a few
percent per scrape) and diurnal swing (±25-50%), the way a real incident is:
a CPU spike pins the container at its limit, a leak climbs linearly to the
memory limit and ends in an OOM kill, a storm adds tens of MB/s and hundreds
of errors/s, a disk fill climbs linearly to 98% (so "full in < 4 h" can fire
well before it is full), a crash loop restarts with kubelet's back-off
(10 s doubling to 5 min), node memory pressure leaves < 100 MiB available.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Literal, get_args

from models.records import Incident, KubeEvent

from collectors.simulator._layout import MiB, ClusterState, ContainerState, NodeState, PodState
from collectors.simulator.errors import SimulatorError

if TYPE_CHECKING:
    from collectors.simulator._fleet import Fleet

__all__ = ["IncidentKind", "KINDS", "INCIDENT_EFFECTS", "DEFAULT_DURATION_S", "IncidentPlan", "ActiveIncident"]

IncidentKind = Literal["cpu_spike", "memory_leak", "network_storm", "disk_fill", "crash_loop", "node_memory_pressure"]
KINDS: tuple[IncidentKind, ...] = get_args(IncidentKind)
if set(KINDS) != set(get_args(Incident.model_fields["kind"].annotation)):  # pragma: no cover - contract guard
    raise RuntimeError("collectors.simulator incident kinds differ from models.records.Incident.kind")

INCIDENT_EFFECTS: dict[str, dict[str, int]] = {
    "cpu_spike": {
        "container.cpu_cores": +1,
        "container.cpu_request_share": +1,
        "container.cpu_limit_share": +1,
        "container.cpu_node_share": +1,
        "pod.cpu_cores": +1,
    },
    "memory_leak": {
        "container.memory_working_set_bytes": +1,
        "container.memory_rss_bytes": +1,
        "container.memory_limit_share": +1,
        "container.memory_request_share": +1,
        "pod.memory_working_set_bytes": +1,
        "container.restart_count": +1,
    },
    "network_storm": {
        "pod.network.rx_bytes_per_s": +1,
        "pod.network.tx_bytes_per_s": +1,
        "pod.network.rx_errors_per_s": +1,
        "node.network.rx_bytes_per_s": +1,
    },
    "disk_fill": {"volume.used_bytes": +1, "volume.used_share": +1, "volume.available_bytes": -1},
    "crash_loop": {"container.restart_count": +1},
    "node_memory_pressure": {
        "node.memory_working_set_bytes": +1,
        "node.memory_node_share": +1,
        "node.memory_available_bytes": -1,
    },
}
"""Kind -> metric (as in models.series) -> direction of the change during the incident (+1 up, -1 down).

``Incident.metrics`` lists these names (``container.cpu_limit_share`` only
when the container has a CPU limit). ``container.restart_count`` changes at
the end of a memory leak (the OOM kill) and all along a crash loop.
"""

DEFAULT_DURATION_S: dict[str, float] = {
    "cpu_spike": 600,
    "memory_leak": 900,
    "network_storm": 480,
    "disk_fill": 1800,
    "crash_loop": 600,
    "node_memory_pressure": 600,
}
"""Simulated seconds; rounded up to whole scrape intervals, at least four."""


@dataclass(frozen=True, slots=True)
class IncidentPlan:
    """One incident to inject ``at_s`` simulated seconds after the fleet's first step.

    >>> IncidentPlan.parse("memory_leak@60")
    IncidentPlan(kind='memory_leak', at_s=60.0, duration_s=None, cluster=None)
    >>> IncidentPlan.parse("disk_fill@0:300")
    IncidentPlan(kind='disk_fill', at_s=0.0, duration_s=300.0, cluster=None)
    """

    kind: IncidentKind
    at_s: float
    duration_s: float | None = None
    cluster: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise SimulatorError(f"unknown incident kind {self.kind!r}; known: {', '.join(KINDS)}")
        if self.at_s < 0 or (self.duration_s is not None and self.duration_s <= 0):
            raise SimulatorError(f"incident {self.kind}: at_s must be >= 0 and duration_s > 0")

    @classmethod
    def parse(cls, text: str) -> IncidentPlan:
        """``KIND@SECONDS[:DURATION]``, seconds of simulated time after the start."""
        kind, sep, rest = text.partition("@")
        if not sep:
            raise SimulatorError(f"{text!r} is not KIND@SECONDS[:DURATION] (e.g. memory_leak@60)")
        at, _, dur = rest.partition(":")
        try:
            return cls(kind, float(at), float(dur) if dur else None)  # type: ignore[arg-type]
        except ValueError as exc:
            if isinstance(exc, SimulatorError):
                raise
            raise SimulatorError(f"{text!r} is not KIND@SECONDS[:DURATION] (e.g. memory_leak@60)") from exc


class ActiveIncident:
    """An injected incident: its ground truth record and the overrides it sets on each scrape."""

    def __init__(
        self,
        record: Incident,
        *,
        cluster: ClusterState,
        node: NodeState,
        pod: PodState | None,
        container: ContainerState | None,
        start_t: float,
        end_t: float,
        rng: random.Random,
    ) -> None:
        self.record = record
        self.kind = record.kind
        self.cluster = cluster
        self.node = node
        self.pod = pod
        self.container = container
        self.start_t = start_t
        self.end_t = end_t
        self._last_t = start_t - 1.0
        self._count = 0
        self._event_ident: tuple[str, str] | None = None
        self._first_seen: datetime | None = None
        c, p = container, pod
        # Shapes are drawn once, at injection, so a seed fixes them.
        if self.kind == "cpu_spike":
            assert c is not None
            self._cpu = c.lim_cpu * rng.uniform(0.92, 0.98) if c.lim_cpu else min(max(c.cpu_base * 6, c.cpu_base + 1.0), node.cpu_alloc * 0.7)
        elif self.kind == "memory_leak":
            assert c is not None and c.lim_mem is not None
            self._mem0 = c.mem_base
            self._mem1 = int(c.lim_mem * 0.99)
        elif self.kind == "network_storm":
            rx = rng.uniform(20, 60) * 1e6
            self._storm = (rx, rx * rng.uniform(0.2, 0.4), rng.uniform(50, 300))
        elif self.kind == "disk_fill":
            assert p is not None and p.volume is not None
            self._used0 = p.volume.used
            self._used1 = p.volume.capacity * 0.98
        elif self.kind == "crash_loop":
            # kubelet's restart back-off: 10 s doubling to 5 min; the process runs a few seconds each time.
            times, at, n = [], start_t, 0
            while at <= end_t:
                times.append(at)
                at += rng.uniform(2, 8) + min(10 * 2**n, 300)
                n += 1
            self._crashes = times
        elif self.kind == "node_memory_pressure":
            self._available = int(rng.uniform(60, 95) * MiB)
            self._evicted = False
        # Busy targets are left alone by churn, random restarts, evictions and other incidents,
        # so the ground truth stays true. A node is only busy under node_memory_pressure.
        if pod is not None:
            pod.busy = True
        else:
            node.busy = True

    # ------------------------------------------------------------------
    def apply(self, t: float, ts: datetime, fleet: Fleet) -> tuple[list[KubeEvent], bool]:
        """Set this scrape's overrides; returns the events it caused and whether the incident is over."""
        interval = fleet.interval_s
        c, p, n = self.container, self.pod, self.node
        events: list[KubeEvent] = []
        past = t > self.end_t + 1e-6
        if self.kind == "memory_leak" and t >= self.end_t - 1e-6:
            events.extend(self._oom_kill(t, ts, fleet))
            self._release()
            return events, True
        if past:
            events.extend(self.clear(ts, fleet))
            return events, True
        if self.kind == "cpu_spike":
            assert c is not None
            c.cpu_override = self._cpu
        elif self.kind == "memory_leak":
            assert c is not None
            frac = min(1.0, (t - self.start_t + interval) / max(self.end_t - self.start_t, interval))
            c.mem_override = int(self._mem0 + (self._mem1 - self._mem0) * frac)
        elif self.kind == "network_storm":
            assert p is not None
            p.net_storm = self._storm
        elif self.kind == "disk_fill":
            assert p is not None and p.volume is not None
            frac = (t - self.start_t + interval) / (self.end_t - self.start_t + interval)
            p.volume.used_override = int(self._used0 + (self._used1 - self._used0) * min(1.0, frac))
        elif self.kind == "crash_loop":
            events.extend(self._crash_loop(t, ts, fleet))
        elif self.kind == "node_memory_pressure":
            frac = min(1.0, (t - self.start_t + interval) / (3 * interval))
            n.pressure_frac = frac
            n.pressure_available = self._available
            if frac >= 1.0 and not n.memory_pressure:
                n.memory_pressure = True
                events.append(fleet.events.node(self.cluster, n, "NodeHasInsufficientMemory", f"Node {n.name} status is now: NodeHasInsufficientMemory", ts))
                events.append(fleet.events.node(self.cluster, n, "EvictionThresholdMet", "Attempting to reclaim memory", ts, type="Warning"))
            if n.memory_pressure and not self._evicted:
                self._evicted = True
                events.extend(fleet.evict_for_memory(self.cluster, n, t, ts, available=self._available))
        self._last_t = t
        return events, False

    def _oom_kill(self, t: float, ts: datetime, fleet: Fleet) -> list[KubeEvent]:
        """The leak reaches the limit: the kernel kills the container, kubelet restarts it."""
        c, p, n = self.container, self.pod, self.node
        out: list[KubeEvent] = []
        assert c is not None and p is not None and c.lim_mem is not None
        c.mem_override = None
        fleet.restart(c, t, "OOMKilled")
        msg = f"Container {c.name} in pod {p.workload.namespace}/{p.name} was OOMKilled (memory limit {c.lim_mem // MiB}Mi); restarting"
        out.append(fleet.events.pod(self.cluster, p, "OOMKilled", msg, ts, type="Warning", container=c.name))
        out.append(
            fleet.events.node(
                self.cluster,
                n,
                "OOMKilling",
                f"Memory cgroup out of memory: Killed process {fleet.pid()} ({c.name}) total-vm:{c.lim_mem // 1024 * 2}kB, "
                f"anon-rss:{c.lim_mem // 1024}kB, file-rss:0kB, shmem-rss:0kB",
                ts,
                type="Warning",
                component="kernel-monitor",
            )
        )
        return out

    def _crash_loop(self, t: float, ts: datetime, fleet: Fleet) -> list[KubeEvent]:
        """This scrape of a crash loop: the restarts since the last one, and kubelet's BackOff event (counted up)."""
        c, p = self.container, self.pod
        out: list[KubeEvent] = []
        assert c is not None and p is not None
        crashes = sum(1 for x in self._crashes if self._last_t < x <= t)
        if crashes:
            fleet.restart(c, t, "Error", times=crashes)
        c.crashing = True
        self._count += 1
        if self._event_ident is None:
            self._event_ident = fleet.events.ident(p.name)
            self._first_seen = ts
        out.append(
            fleet.events.pod(
                self.cluster,
                p,
                "BackOff",
                f"Back-off restarting failed container {c.name} in pod {p.name}_{p.workload.namespace}({p.uid})",
                ts,
                type="Warning",
                container=c.name,
                count=self._count,
                first_seen=self._first_seen,
                ident=self._event_ident,
            )
        )
        return out

    def clear(self, ts: datetime, fleet: Fleet) -> list[KubeEvent]:
        """Undo the overrides (the incident is over: fixed, rolled back or cleaned up)."""
        c, p, n = self.container, self.pod, self.node
        events: list[KubeEvent] = []
        if c is not None:
            c.cpu_override = None
            c.mem_override = None
            c.crashing = False
        if p is not None:
            p.net_storm = None
            if p.volume is not None:
                p.volume.used_override = None
        if self.kind == "node_memory_pressure":
            n.pressure_frac = 0.0
            if n.memory_pressure:
                n.memory_pressure = False
                events.append(fleet.events.node(self.cluster, n, "NodeHasSufficientMemory", f"Node {n.name} status is now: NodeHasSufficientMemory", ts))
        self._release()
        return events

    def _release(self) -> None:
        if self.pod is not None:
            self.pod.busy = False
        else:
            self.node.busy = False


def round_duration(duration_s: float, interval_s: float) -> float:
    """Whole scrape intervals, at least four, so every shape has room to show."""
    return max(4, math.ceil(duration_s / interval_s - 1e-9)) * interval_s
