"""Injected incidents: each kind moves the metrics it names, in the right direction, only during its window."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from collectors.simulator import INCIDENT_EFFECTS, KINDS, Fleet, IncidentPlan
from models.records import Incident
from models.series import entities

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)
STEP = 15.0
AT, DURATION = 300.0, 300.0  # 20 scrapes of baseline, 21 during, 20 after


def simulate(kind: str, *, seed: int = 21, duration: float = DURATION, after: float = 300.0):
    fleet = Fleet(
        clusters=1,
        nodes_per_cluster=3,
        pods_per_node=8,
        seed=seed,
        incidents="none",
        inject=[IncidentPlan(kind, AT, duration)],  # type: ignore[arg-type]
        restart_every_s=None,
        rollout_every_s=None,
    )
    steps = []
    n = int((AT + duration + after) / STEP) + 1
    for k in range(n):
        now = T0 + timedelta(seconds=STEP * k)
        steps.append((now, *fleet.step(now)))
    (incident,) = [i for _, _, _, incs in steps for i in incs]
    return incident, steps


def _entity_kind(metric: str) -> str:
    for prefix, kind in (("node.network.", "node_interface"), ("node.", "node"), ("pod.network.", "pod_interface"), ("pod.", "pod"), ("volume.", "volume")):
        if metric.startswith(prefix):
            return kind
    return "container"


def series_of(incident: Incident, steps, metric: str) -> list[tuple[datetime, float]]:
    """The incident target's values of ``metric`` over time (None values dropped)."""
    kind = _entity_kind(metric)
    out = []
    for now, scrapes, _, _ in steps:
        for s in scrapes:
            for e in entities(s):
                if e.kind != kind:
                    continue
                lb = e.labels
                if kind.startswith("node"):
                    if lb["node"] != incident.node:
                        continue
                elif lb.get("pod") != incident.pod or (kind == "container" and lb["container"] != incident.container):
                    continue
                value = dict(e.metrics)[metric]
                if value is not None:
                    out.append((now, value))
    return out


@pytest.mark.parametrize("kind", KINDS)
def test_each_incident_kind_changes_its_metrics_in_the_right_direction_only_during_its_window(kind: str) -> None:
    incident, steps = simulate(kind)
    assert incident.kind == kind
    assert incident.start == T0 + timedelta(seconds=AT) and incident.end == incident.start + timedelta(seconds=DURATION)
    assert incident.metrics and set(incident.metrics) <= set(INCIDENT_EFFECTS[kind])
    for metric in incident.metrics:
        direction = INCIDENT_EFFECTS[kind][metric]
        values = series_of(incident, steps, metric)
        before = [v for t, v in values if t < incident.start]
        # A leak ends in the OOM kill at `end`: that scrape already shows the restarted container.
        during_end = incident.end - timedelta(seconds=1) if kind == "memory_leak" else incident.end
        during = [v for t, v in values if incident.start <= t <= during_end]
        after = [v for t, v in values if t > incident.end]
        assert len(before) >= 15 and len(during) >= 15 and len(after) >= 15, metric
        if metric == "container.restart_count":
            assert len(set(before)) == 1 and len(set(after)) == 1, "restarts happen only inside the window"
            at_end = [v for t, v in values if t == incident.end]
            assert at_end[0] > before[-1]
            if kind == "crash_loop":
                assert during[-1] - during[0] >= 3 and after[0] == during[-1]
            continue
        # Ramps (leak, disk fill) are judged on their second half; steps on the whole window.
        judged = during[len(during) // 2 :] if kind in ("memory_leak", "disk_fill") else during
        if direction > 0:
            assert min(judged) > max(before), f"{metric} does not rise above its baseline"
            # (error rates idle at 0 with an odd error now and then: allow one per scrape)
            assert max(after) <= max(before) * 1.05 + 1 / STEP, f"{metric} stays high after the incident"
        else:
            assert max(judged) < min(before), f"{metric} does not fall below its baseline"
            assert min(after) >= min(before) * 0.95, f"{metric} stays low after the incident"


def test_incidents_are_clearly_abnormal_against_the_noise() -> None:
    """A z-score of the incident against its own baseline: an anomaly detector must see it."""
    for kind, metric in (("cpu_spike", "container.cpu_cores"), ("network_storm", "pod.network.rx_bytes_per_s"), ("node_memory_pressure", "node.memory_node_share")):
        incident, steps = simulate(kind)
        values = series_of(incident, steps, metric)
        before = [v for t, v in values if t < incident.start]
        during = [v for t, v in values if incident.start <= t <= incident.end]
        mean = sum(before) / len(before)
        sd = (sum((v - mean) ** 2 for v in before) / (len(before) - 1)) ** 0.5
        assert min(during) > mean + 8 * sd, kind


def test_memory_leak_ramps_to_the_limit_and_ends_in_an_oomkilled_restart_and_warning_event() -> None:
    incident, steps = simulate("memory_leak")
    ws = series_of(incident, steps, "container.memory_working_set_bytes")
    share = dict(series_of(incident, steps, "container.memory_limit_share"))
    last_before_end = incident.end - timedelta(seconds=STEP)
    assert share[last_before_end] > 0.95 and share[incident.start] < 0.7
    during = [v for t, v in ws if incident.start <= t < incident.end]
    assert all(b > a for a, b in zip(during, during[1:])), "a leak only grows"
    end_step = next(s for s in steps if s[0] == incident.end)
    (c,) = [c for s in end_step[1] for p in s.pods if p.name == incident.pod for c in p.containers if c.name == incident.container]
    assert c.last_terminated_reason == "OOMKilled" and c.cpu_cores is None and c.memory_limit_share < 0.5
    oom = [e for e in end_step[2] if e.reason == "OOMKilled"]
    assert len(oom) == 1 and oom[0].type == "Warning"
    assert oom[0].involved_object.kind == "Pod" and oom[0].involved_object.name == incident.pod
    assert oom[0].involved_object.field_path == f"spec.containers{{{incident.container}}}"
    assert oom[0].key == f"{incident.cluster}/{incident.namespace}/{incident.pod}"
    npd = [e for e in end_step[2] if e.reason == "OOMKilling"]
    assert npd and npd[0].involved_object.kind == "Node" and npd[0].source_component == "kernel-monitor"
    assert not [e for _, _, evs, _ in steps for e in evs if e.reason == "OOMKilled" and e not in oom]


def test_crash_loop_emits_backoff_events_with_increasing_count_and_restarts_with_kubelet_backoff() -> None:
    incident, steps = simulate("crash_loop", duration=600)
    backoff = [e for _, _, evs, _ in steps for e in evs if e.reason == "BackOff"]
    assert len(backoff) == 41  # every scrape of the window
    assert [e.count for e in backoff] == list(range(1, 42))
    assert len({e.uid for e in backoff}) == 1 and len({e.name for e in backoff}) == 1
    assert all(e.type == "Warning" and e.first_seen == incident.start for e in backoff)
    assert [e.last_seen for e in backoff] == sorted(e.last_seen for e in backoff)
    assert int(backoff[-1].resource_version) > int(backoff[0].resource_version)
    assert backoff[0].message.startswith(f"Back-off restarting failed container {incident.container} in pod {incident.pod}_")
    restarts = series_of(incident, steps, "container.restart_count")
    at_start = dict(restarts)[incident.start]
    total = restarts[-1][1] - at_start + 1
    # Back-off 10, 20, 40, 80, 160, 300 s: about six restarts in ten minutes, not one per scrape.
    assert 5 <= total <= 7
    seen = [t for (_, v), (t, w) in zip(restarts, restarts[1:]) if w > v]
    gaps = [(b - a).total_seconds() for a, b in zip(seen, seen[1:])]
    assert gaps[0] <= 30 and gaps[-1] >= 90, "restarts slow down as the back-off doubles"


def test_disk_fill_is_linear_so_a_prediction_fires_long_before_the_volume_is_full() -> None:
    incident, steps = simulate("disk_fill", duration=1800, after=60)
    used = [(t, v) for t, v in series_of(incident, steps, "volume.used_bytes") if incident.start <= t <= incident.end]
    cap = series_of(incident, steps, "volume.capacity_bytes")[0][1]
    slopes = [(b - a) / STEP for (_, a), (_, b) in zip(used, used[1:])]
    assert max(slopes) / min(slopes) < 1.01
    mid_t, mid_v = used[len(used) // 2]
    hours_to_full = (cap - mid_v) / slopes[0] / 3600
    assert hours_to_full < 0.5 and mid_v / cap < 0.9  # "disk full in < 4 h" fires while there is room left
    assert used[-1][1] / cap == pytest.approx(0.98, abs=0.005)


def test_node_memory_pressure_sets_the_condition_emits_node_events_and_evicts_pods() -> None:
    incident, steps = simulate("node_memory_pressure")
    cond = {}
    pods_on_node = {}
    for now, scrapes, _, _ in steps:
        (s,) = [s for s in scrapes if s.node == incident.node]
        cond[now] = s.node_stats.conditions["MemoryPressure"]
        pods_on_node[now] = {p.name for p in s.pods}
        if incident.start + timedelta(seconds=2 * STEP) <= now <= incident.end:
            assert s.node_stats.memory_available_bytes < 100 * 2**20
    assert [t for t, v in cond.items() if v == "True"] == [
        t for t in cond if incident.start + timedelta(seconds=2 * STEP) <= t <= incident.end
    ]
    events = [e for _, _, evs, _ in steps for e in evs]
    node_reasons = [e.reason for e in events if e.involved_object.kind == "Node"]
    assert node_reasons == ["NodeHasInsufficientMemory", "EvictionThresholdMet", "NodeHasSufficientMemory"]
    evicted = [e for e in events if e.reason == "Evicted"]
    assert 1 <= len(evicted) <= 2 and all(e.type == "Warning" and e.source_host == incident.node for e in evicted)
    assert all(e.message.startswith("The node was low on resource: memory.") for e in evicted)
    gone = {e.involved_object.name for e in evicted}
    assert gone <= pods_on_node[incident.start] and not gone & pods_on_node[incident.end]


@pytest.mark.parametrize("kind", ["cpu_spike", "network_storm"])
def test_other_series_are_left_alone_by_an_incident(kind: str) -> None:
    """The same seed with and without the incident: only the target's pod (and node totals) differ."""
    incident, with_it = simulate(kind)
    fleet = Fleet(clusters=1, nodes_per_cluster=3, pods_per_node=8, seed=21, incidents="none", restart_every_s=None, rollout_every_s=None)
    without = [fleet.step(t) for t, *_ in with_it]
    for (_, a, _, _), (b, _, _) in zip(with_it, without):
        for sa, sb in zip(a, b):
            for pa, pb in zip(sa.pods, sb.pods):
                assert pa.name == pb.name
                if pa.name != incident.pod:
                    assert pa == pb
