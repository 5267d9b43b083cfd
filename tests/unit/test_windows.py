"""Windows and node state: exact 1m and 1h per-entity rollups, late samples, grace, state that fits and survives reloads."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from collectors.simulator import Fleet
from models.codec import decode, encode
from models.records import EntityRollup, NodeSample, NodeScrape, PodSample, Resources
from models.series import entities
from models.settings import load_settings
from streams.pipeline import CHUNK_SEP, NodeState, Pipeline, identity
from streams.windows import EntitySlots, Windows, rollups_of

EID = "c1/-/node:n1/-"
T0 = 1_772_323_200  # 2026-03-01T00:00:00Z, a whole hour


def node_slots(*metrics: str) -> list[EntitySlots]:
    return [EntitySlots(EID, identity("node", {"cluster": "c1", "node": "n1"}), 0, metrics or ("node.cpu_cores",))]


def fold(w: Windows, ts: float, *values: float) -> int:
    w.ensure(len(values))
    return w.fold(ts, np.array(values, dtype=float))


def by_window(records: list[tuple[str, bytes]], eid: str = EID) -> dict[tuple[str, int], EntityRollup]:
    out = {}
    for key, value in records:
        if key == eid:
            r = decode(EntityRollup, value)
            out[(r.window, int(r.window_start.timestamp()))] = r
    return out


def test_one_minute_rollup_has_exact_min_max_mean_last_sum_and_count_per_metric() -> None:
    w = Windows(grace_s=0)
    for i, (cpu, mem) in enumerate([(1.0, 10.0), (4.0, 30.0), (2.0, 20.0), (3.0, 40.0)]):
        assert fold(w, T0 + 15 * i, cpu, mem) == 0
    one = by_window(w.advance(T0 + 60, node_slots("node.cpu_cores", "node.memory_working_set_bytes")))[("1m", T0)]
    cpu, mem = one.metrics["node.cpu_cores"], one.metrics["node.memory_working_set_bytes"]
    assert (cpu.min, cpu.max, cpu.mean, cpu.last, cpu.sum, cpu.count) == (1.0, 4.0, 2.5, 3.0, 10.0, 4)
    assert (mem.min, mem.max, mem.last, mem.sum) == (10.0, 40.0, 40.0, 100.0)
    assert (one.kind, one.node, one.pod, one.window_end) == ("node", "n1", None, datetime.fromtimestamp(T0 + 60, UTC))


def test_an_hour_is_the_merge_of_its_minutes_and_closes_after_its_end_plus_the_grace() -> None:
    w = Windows(grace_s=30)
    out: list[tuple[str, bytes]] = []
    values = []
    for i in range(4 * 60 + 3):  # one hour of 15 s scrapes and 45 s into the next
        v = float((i * 37) % 101)
        values.append(v) if i < 240 else None
        fold(w, T0 + 15 * i, v)
        out += w.advance(T0 + 15 * i, node_slots())
    got = by_window(out)
    assert ("1h", T0) in got, "the hour closed once the event time passed its end plus the grace"
    h = got[("1h", T0)].metrics["node.cpu_cores"]
    assert (h.count, h.min, h.max, h.last) == (240, min(values), max(values), values[-1])
    assert h.sum == pytest.approx(sum(values))
    minutes = [got[("1m", T0 + 60 * m)].metrics["node.cpu_cores"] for m in range(60)]
    assert sum(m.count for m in minutes) == 240 and max(m.max for m in minutes) == h.max


def test_a_scrape_that_closes_an_hour_and_the_next_minute_publishes_the_hour_first() -> None:
    w = Windows(grace_s=0)
    fold(w, T0 + 3590, 1.0)
    fold(w, T0 + 3610, 2.0)
    out = w.advance(T0 + 3700, node_slots())  # a scrape 90 s later closes minute 59, the hour and minute 60
    assert [(r.window, int(r.window_start.timestamp()) - T0) for r in rollups_of(out)] == [
        ("1m", 3540), ("1h", 0), ("1m", 3600)]


def test_an_hour_is_published_even_when_the_node_was_silent_at_its_end() -> None:
    w = Windows(grace_s=0)
    fold(w, T0 + 600, 5.0)
    out = w.advance(T0 + 700, node_slots())
    out += w.advance(T0 + 3 * 3600, node_slots())  # silent since minute 10
    h = by_window(out)[("1h", T0)]
    assert h.metrics["node.cpu_cores"].count == 1 and h.window_end == datetime.fromtimestamp(T0 + 3600, UTC)


def test_a_sample_within_the_grace_is_folded_into_its_pane_and_a_later_one_is_dropped() -> None:
    w = Windows(grace_s=30)
    fold(w, T0 + 10, 1.0)
    assert w.advance(T0 + 75, node_slots()) == []  # 15 s past the pane's end: still open (grace 30 s)
    assert fold(w, T0 + 50, 5.0) == 0  # a straggler from the first minute, within the grace
    one = by_window(w.advance(T0 + 95, node_slots()))[("1m", T0)].metrics["node.cpu_cores"]
    assert (one.count, one.max, one.last) == (2, 5.0, 5.0)
    assert fold(w, T0 + 55, 9.0) == 1, "the pane closed: a sample for it is late"
    assert w.is_late(T0 + 59) and not w.is_late(T0 + 60)


def test_a_straggler_does_not_replace_the_last_value_of_a_later_sample() -> None:
    w = Windows(grace_s=60)
    fold(w, T0 + 45, 7.0)
    fold(w, T0 + 30, 3.0)  # older than the sample already in the pane
    one = by_window(w.advance(T0 + 120, node_slots()))[("1m", T0)].metrics["node.cpu_cores"]
    assert (one.last, one.count, one.min) == (7.0, 2, 3.0)


def test_rollup_bytes_match_the_record_encoding_for_values_of_every_magnitude() -> None:
    rnd = random.Random(3)
    w = Windows(grace_s=0)
    layout = [EntitySlots(f"c1/ns/pod-{i}/app", identity("container", {"cluster": "c1", "node": "n1", "namespace": "ns",
                                                                     "pod": f"pod-{i}", "container": "app"}),
                          2 * i, ("container.cpu_cores", "container.memory_working_set_bytes")) for i in range(200)]
    for k in range(3):
        vals = [rnd.choice([1, -1]) * rnd.random() * 10.0 ** rnd.randint(-12, 18) if k else float(rnd.randint(0, 10**9))
                for _ in range(400)]
        fold(w, T0 + 10 * k, *vals)
    out = w.advance(T0 + 60, layout)
    assert len(out) == 200
    assert all(encode(decode(EntityRollup, v)) == v for _, v in out)


# --------------------------------------------------------------------------
# The pipeline's node state
# --------------------------------------------------------------------------


def scrape(i: int, cpu: float, *, pods: int = 2) -> NodeScrape:
    return NodeScrape(
        cluster="c1", node="n1", timestamp=datetime.fromtimestamp(T0, UTC) + timedelta(seconds=15 * i),
        node_stats=NodeSample(cpu_cores=cpu, allocatable=Resources(cpu_cores=4.0, memory_bytes=8_000_000_000)),
        pods=[PodSample(namespace="shop", name=f"cart-{p}", workload_name="cart", workload_kind="Deployment",
                        cpu_cores=cpu / 4, memory_working_set_bytes=1_000_000 * (p + 1),
                        requests=Resources(cpu_cores=0.5, memory_bytes=2_000_000)) for p in range(pods)],
    )


def test_pipeline_counts_every_sample_of_a_scrape_past_the_grace_as_late() -> None:
    pipe = Pipeline(load_settings(streams={"window_grace_s": 0}))
    st = pipe.new_state("c1/n1")
    for i in range(6):
        assert pipe.process(st, scrape(i, 1.0), offset=i).late_dropped == 0
    out = pipe.process(st, scrape(1, 2.0), offset=6)  # minute 0 closed at scrape 4 (T0 + 60 s)
    assert out.late_dropped > 0 and out.rollup_records == []
    windowed = sum(1 for e in entities(scrape(1, 2.0)) for m, v in e.metrics if v is not None and m in pipe.windowed)
    # ... and the workload's and the namespace's partial sums: use, requests and pods known, limits not.
    assert out.late_dropped == windowed + 2 * 5, "every windowed sample is counted"


def test_pipeline_sums_pods_per_node_and_sends_workload_and_namespace_partials_apart() -> None:
    pipe = Pipeline(load_settings(streams={"window_grace_s": 0}))
    st = pipe.new_state("c1/n1")
    out_records, partials = [], []
    for i in range(5):
        out = pipe.process(st, scrape(i, 2.0, pods=3))
        out_records += out.rollup_records
        partials += out.partials
    node = by_window(out_records)[("1m", T0)].metrics
    assert (node["node.pods"].mean, node["node.pods_cpu_cores"].mean) == (3.0, 1.5)
    assert node["node.pods_cpu_request_allocatable_share"].mean == pytest.approx(3 * 0.5 / 4.0)
    assert not any(k.endswith("/node:n1") for k, _ in out_records), "per-node partials never reach rollups.v2"
    parts = {r.entity_id: r for r in (decode(EntityRollup, p) for p in partials)}
    wl = parts["c1/shop/workload:cart/node:n1"]
    assert (wl.kind, wl.workload, wl.node, wl.metrics["workload.memory_working_set_bytes"].max,
            wl.metrics["workload.pods"].last) == ("workload", "cart", "n1", 6_000_000.0, 3.0)
    assert parts["c1/shop/-/node:n1"].metrics["namespace.memory_request_bytes"].mean == 6_000_000.0
    assert EID in parts, "the node's own rollup goes to the cluster sums too"
    pod = by_window(out_records, "c1/shop/cart-1/-")[("1m", T0)]
    assert (pod.kind, pod.workload, pod.pod, pod.metrics["pod.cpu_cores"].last) == ("pod", "cart", "cart-1", 0.5)


def _reload(st: NodeState, pipe: Pipeline) -> NodeState:
    entries = dict(st.chunks(everything=True))
    header = entries.pop(st.key.encode())
    return NodeState.loads(header, [v for v in entries.values() if v is not None], pipe)


def test_node_state_survives_a_reload_mid_window_and_gives_the_same_rollups() -> None:
    pipe = Pipeline(load_settings(streams={"window_grace_s": 0}))
    a, b = pipe.new_state("c1/n1"), pipe.new_state("c1/n1")
    out_a, out_b = [], []
    for i in range(10):
        out_a += pipe.process(a, scrape(i, 1.0 + i), offset=i).rollup_records
        if i == 6:
            b = _reload(b, pipe)
        out_b += pipe.process(b, scrape(i, 1.0 + i), offset=i).rollup_records
    assert out_a == out_b and len(out_a) > 0
    assert pipe.process(_reload(a, pipe), scrape(3, 1.0), offset=9).replayed


def test_a_crash_in_the_middle_of_a_checkpoint_replays_into_exactly_the_same_rollups() -> None:
    """Groups written, header not: the replay applies each message only to the groups that lack it."""
    pipe = Pipeline(load_settings(streams={"window_grace_s": 15}))
    fleet = Fleet(clusters=1, nodes_per_cluster=1, pods_per_node=6, containers_per_pod=2, seed=4, incidents="none")
    scrapes = [fleet.step(datetime.fromtimestamp(T0, UTC) + timedelta(seconds=15 * i))[0][0] for i in range(20)]
    ref, live = pipe.new_state(scrapes[0].key), pipe.new_state(scrapes[0].key)
    expected, got = [], []
    for i, s in enumerate(scrapes):
        expected += pipe.process(ref, s, offset=i).rollup_records
    for i, s in enumerate(scrapes[:7]):
        got += pipe.process(live, s, offset=i).rollup_records
    header_at_6 = dict(live.chunks(everything=True))  # a complete checkpoint at offset 6
    for i, s in enumerate(scrapes[7:12], start=7):
        got += pipe.process(live, s, offset=i).rollup_records
    later = dict(live.chunks(everything=True))  # the next checkpoint at offset 11 ...
    key = live.key.encode()
    half = sorted(k for k in later if k != key)[: len(later) // 2]  # ... cut after half of its groups
    entries = {**header_at_6, **{k: later[k] for k in half}}
    restored = NodeState.loads(entries.pop(key), [v for v in entries.values() if v is not None], pipe)
    for i, s in enumerate(scrapes[7:], start=7):  # the replay from the committed offset (7)
        out = pipe.process(restored, s, offset=i).rollup_records
        got += out if i >= 12 else [r for r in out if r not in got]
    assert sorted(set(got)) == sorted(set(expected))


def test_a_node_of_250_pods_of_3_containers_fits_a_stock_broker_and_stays_small_per_series() -> None:
    pipe = Pipeline(load_settings())
    fleet = Fleet(clusters=1, nodes_per_cluster=1, pods_per_node=250, containers_per_pod=3, seed=2, incidents="none")
    st = None
    for i in range(8):
        s = fleet.step(datetime.fromtimestamp(T0, UTC) + timedelta(seconds=15 * i))[0][0]
        st = st or pipe.new_state(s.key)
        pipe.process(st, s, offset=i)
    assert st is not None and len(st.groups) == 251
    entries = st.chunks(everything=True)
    sizes = [len(v) for _, v in entries if v is not None]
    series = sum(g.width for g in st.groups.values())
    assert max(sizes) <= 900 * 1024, f"largest entry {max(sizes)} bytes"
    assert sum(sizes) / series <= 500, f"{sum(sizes) / series:.0f} bytes per series"
    assert all(CHUNK_SEP in k for k, _ in entries[:-1]) and entries[-1][0] == st.key.encode(), "the header is last"


def pipeline_with_rule(tmp_path, alert: str, metric: str, threshold: float) -> Pipeline:  # noqa: ANN001
    """A pipeline (grace 0) whose only rule is ``metric > threshold`` without ``for``."""
    from streams.rules import RuleEngine

    rules = tmp_path / "rules.yaml"
    rules.write_text(f"groups:\n  - name: g\n    rules:\n      - alert: {alert}\n        metric: {metric}\n"
                     f"        op: '>'\n        threshold: {threshold}\n        severity: warning\n")
    settings = load_settings(streams={"window_grace_s": 0, "rules_files": [rules], "use_default_rules": False})
    return Pipeline(settings, engine=RuleEngine.from_settings(settings))


def test_a_pod_that_is_gone_resolves_its_alerts_and_its_entry_is_deleted_after_its_windows_closed(tmp_path) -> None:  # noqa: ANN001
    pipe = pipeline_with_rule(tmp_path, "PodCPUHigh", "pod.cpu_cores", 0.5)
    st = pipe.new_state("c1/n1")
    fired = [t for i in range(3) for t in pipe.process(st, scrape(i, 4.0, pods=2), offset=i).transitions]
    assert sorted(t.labels["pod"] for t in fired) == ["cart-0", "cart-1"]
    out_records: list[tuple[str, bytes]] = []
    resolved = []
    for i in range(3, 3 + 4 * 70):  # cart-1 is gone from scrape 3 on, for 70 minutes
        out = pipe.process(st, scrape(i, 0.1, pods=1), offset=i)
        resolved += [t for t in out.transitions if t.status == "resolved"]
        out_records += out.rollup_records
    assert [(t.labels["pod"], t.ends_at) for t in resolved if t.labels["pod"] == "cart-1"] == [
        ("cart-1", datetime.fromtimestamp(T0 + 30 + 300, UTC))]
    assert "shop/cart-1" not in st.groups
    assert ("1h", T0) in by_window(out_records, "c1/shop/cart-1/-"), "its last hour was published before it went"
    assert (st.chunk_key("shop/cart-1"), None) in st.chunks()


def test_tick_of_a_silent_node_closes_its_windows_and_resolves_its_alert_at_last_seen_plus_staleness(tmp_path) -> None:  # noqa: ANN001
    pipe = pipeline_with_rule(tmp_path, "NodeCPUHigh", "node.cpu_cores", 2.0)
    st = pipe.new_state("c1/n1")
    fired = [t for i in range(3) for t in pipe.process(st, scrape(i, 3.0), offset=i).transitions]
    assert [t.status for t in fired] == ["firing"]
    last_seen = T0 + 30  # scrape 2, then silence

    early = pipe.tick(st, last_seen + 100)  # silent, but not yet stale
    assert early.transitions == []
    assert ("1m", T0) in by_window(early.rollup_records), "the minute the node was last seen in closed"

    late = pipe.tick(st, last_seen + 400)
    [resolved] = late.transitions
    assert (resolved.status, resolved.fingerprint, resolved.ends_at) == (
        "resolved", fired[0].fingerprint, datetime.fromtimestamp(last_seen + 300, UTC))
    assert late.changed and not pipe.tick(st, last_seen + 400).changed, "a second tick to the same time changes nothing"
    again = pipe.tick(st, last_seen + 900)
    assert again.transitions == [] and again.rollup_records == []
    # The detectors and the node's own clock did not move: its next scrape is processed as usual.
    assert st.last_ts == last_seen and pipe.process(st, scrape(80, 1.0), offset=3).samples > 0
