"""Windows of one node: exact 1-minute and 5-minute rollups, late samples, grace, and the rollup bytes contract."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.codec import decode, encode
from models.records import NodeSample, NodeScrape, PodSample, Resources, Rollup
from models.settings import load_settings
from streams.pipeline import NodeState, Pipeline
from streams.windows import Windows, rollup

SID = "c1/-/node:n1/-/node.cpu_cores"
T0 = 1_772_323_200  # 2026-03-01T00:00:00Z, a whole minute


def by_window(records: list[tuple[str, bytes]], sid: str = SID) -> dict[tuple[str, int], Rollup]:
    out = {}
    for key, value in records:
        if key == sid:
            r = decode(Rollup, value)
            out[(r.window, int(r.window_start.timestamp()))] = r
    return out


def test_one_minute_rollup_has_exact_min_max_mean_last_sum_and_count() -> None:
    w = Windows(grace_s=0)
    for i, v in enumerate([1.0, 4.0, 2.0, 3.0]):
        assert w.add(T0 + 15 * i, SID, v)
    got = by_window(w.advance(T0 + 60, node="n1"))
    one = got[("1m", T0)]
    assert (one.min, one.max, one.mean, one.last, one.sum, one.count) == (1.0, 4.0, 2.5, 3.0, 10.0, 4)
    assert (one.window_end, one.level, one.node, one.pod) == (datetime.fromtimestamp(T0 + 60, UTC), "series", "n1", None)


def test_five_minute_window_merges_the_closing_pane_with_the_four_before_it() -> None:
    w = Windows(grace_s=0)
    out = []
    for minute in range(6):
        for k in range(4):
            assert w.add(T0 + 60 * minute + 15 * k, SID, float(minute * 10 + k))
        out += w.advance(T0 + 60 * (minute + 1), node="n1")
    got = by_window(out)
    five = got[("5m", T0 + 60)]  # the window [1 min, 6 min): minutes 1..5
    values = [float(m * 10 + k) for m in range(1, 6) for k in range(4)]
    assert (five.min, five.max, five.sum, five.count, five.last) == (10.0, 53.0, sum(values), 20, 53.0)
    assert five.mean == pytest.approx(sum(values) / 20)
    # Early 5-minute windows hold what exists: the first one ends with minute 0 and has only its 4 samples.
    assert got[("5m", T0 - 240)].count == 4
    assert [k for k in got if k[0] == "1m"] == [("1m", T0 + 60 * m) for m in range(6)]


def test_a_sample_within_the_grace_is_folded_into_its_pane_and_a_later_one_is_dropped() -> None:
    w = Windows(grace_s=30)
    assert w.add(T0 + 10, SID, 1.0)
    assert w.advance(T0 + 75, node="n1") == []  # 15 s past the pane's end: still open (grace 30 s)
    assert w.add(T0 + 50, SID, 5.0)  # a straggler from the first minute, within the grace
    got = by_window(w.advance(T0 + 95, node="n1"))
    assert (got[("1m", T0)].count, got[("1m", T0)].max, got[("1m", T0)].last) == (2, 5.0, 5.0)
    assert not w.add(T0 + 55, SID, 9.0), "the pane closed: a sample for it is late"
    assert w.is_late(T0 + 59) and not w.is_late(T0 + 60)


def test_a_straggler_does_not_replace_the_last_value_of_a_later_sample() -> None:
    w = Windows(grace_s=60)
    w.add(T0 + 45, SID, 7.0)
    w.add(T0 + 30, SID, 3.0)  # older than the sample already in the pane
    one = by_window(w.advance(T0 + 120, node="n1"))[("1m", T0)]
    assert (one.last, one.count, one.min) == (7.0, 2, 3.0)


def test_rollup_bytes_are_exactly_what_the_rollup_record_encodes_to() -> None:
    w = Windows(grace_s=0)
    w.workloads["c1/shop/cart-1/"] = "cart"
    sids = ["c1/shop/cart-1/app/container.memory_working_set_bytes", "c1/shop/workload:cart/node:n1/workload.cpu_cores",
            "c1/shop/-/node:n1/namespace.cpu_cores", "c1/-/node:n1/-/node.pods_cpu_cores", SID]
    vals = [123_456_789.0, 0.1 + 0.2, 1e-7, 1e20, 3.0]
    for sid, v in zip(sids, vals, strict=True):
        w.add(T0 + 1, sid, v)
        w.add(T0 + 2, sid, v / 3)
    out = w.advance(T0 + 60, node="n1")
    assert len(out) == 10
    for key, value in out:
        r = decode(Rollup, value)
        assert r.series_id == key
        assert encode(r) == value
        expected = rollup(key, [r.min, r.max, r.sum, r.count, r.last], window=r.window, node="n1", workloads=w.workloads,
                          start=int(r.window_start.timestamp()), end=int(r.window_end.timestamp()))
        assert r == expected
    levels = {decode(Rollup, v).series_id: decode(Rollup, v) for _, v in out}
    assert levels[sids[0]].workload == "cart" and levels[sids[1]].level == "workload" and levels[sids[1]].pod is None
    assert (levels[sids[2]].level, levels[sids[3]].level) == ("namespace", "node")


def test_compaction_drops_silent_series_and_keeps_the_others_exact() -> None:
    w = Windows(grace_s=0)
    gone = [f"c1/ns/pod-{i}/-/pod.cpu_cores" for i in range(1500)]
    for sid in gone:
        w.add(T0, sid, 1.0)
    for minute in range(1, 7):
        w.add(T0 + 60 * minute, SID, float(minute))
        w.advance(T0 + 60 * minute + 1, node="n1")
    assert len(w.sids) < 100, "the 1,500 series silent for 5 minutes were reclaimed"
    w.add(T0 + 60 * 6 + 30, SID, 10.0)
    got = by_window(w.advance(T0 + 60 * 7, node="n1"))
    assert (got[("1m", T0 + 360)].count, got[("1m", T0 + 360)].sum) == (2, 16.0)
    assert (got[("5m", T0 + 120)].count, got[("5m", T0 + 120)].sum) == (6, 2.0 + 3 + 4 + 5 + 6 + 10)


def scrape(i: int, cpu: float, *, pods: int = 2) -> NodeScrape:
    return NodeScrape(
        cluster="c1", node="n1", timestamp=datetime.fromtimestamp(T0, UTC) + timedelta(seconds=15 * i),
        node_stats=NodeSample(cpu_cores=cpu, allocatable=Resources(cpu_cores=4.0, memory_bytes=8_000_000_000)),
        pods=[PodSample(namespace="shop", name=f"cart-{p}", workload_name="cart", workload_kind="Deployment",
                        cpu_cores=cpu / 4, memory_working_set_bytes=1_000_000 * (p + 1)) for p in range(pods)],
    )


def test_pipeline_counts_every_sample_of_a_scrape_past_the_grace_as_late() -> None:
    pipe = Pipeline(load_settings(streams={"window_grace_s": 0}))
    st = pipe.new_state("c1/n1")
    for i in range(6):
        assert pipe.process(st, scrape(i, 1.0), offset=i).late_dropped == 0
    out = pipe.process(st, scrape(1, 2.0), offset=6)  # minute 0 closed at scrape 4 (T0 + 60 s)
    assert out.samples == 5 and out.late_dropped == 5 and out.rollup_records == []


def test_pipeline_rolls_up_node_namespace_and_workload_sums_of_pod_usage() -> None:
    pipe = Pipeline(load_settings(streams={"window_grace_s": 0}))
    st = pipe.new_state("c1/n1")
    out = []
    for i in range(5):
        out += pipe.process(st, scrape(i, 2.0, pods=3)).rollup_records
    wl = by_window(out, "c1/shop/workload:cart/node:n1/workload.memory_working_set_bytes")[("1m", T0)]
    assert (wl.level, wl.workload, wl.namespace, wl.count, wl.max) == ("workload", "cart", "shop", 4, 6_000_000.0)
    share = by_window(out, "c1/-/node:n1/-/node.pods_cpu_allocatable_share")[("1m", T0)]
    assert share.mean == pytest.approx(3 * 0.5 / 4.0)
    pod = by_window(out, "c1/shop/cart-1/-/pod.cpu_cores")[("1m", T0)]
    assert (pod.workload, pod.pod, pod.last) == ("cart", "cart-1", 0.5)


def test_node_state_survives_dumps_and_loads_mid_window() -> None:
    pipe = Pipeline(load_settings(streams={"window_grace_s": 0}))
    a, b = pipe.new_state("c1/n1"), pipe.new_state("c1/n1")
    out_a, out_b = [], []
    for i in range(10):
        out_a += pipe.process(a, scrape(i, 1.0 + i), offset=i).rollup_records
        if i == 6:
            b = NodeState.loads(b.dumps())
        out_b += pipe.process(b, scrape(i, 1.0 + i), offset=i).rollup_records
    assert out_a == out_b and len(out_a) > 0
    assert pipe.process(NodeState.loads(a.dumps()), scrape(3, 1.0), offset=9).replayed


def test_rollup_bytes_match_the_record_encoding_for_values_of_every_magnitude() -> None:
    import random

    rnd = random.Random(3)
    w = Windows(grace_s=0)
    sids = [f"c1/ns/pod-{i}/app/container.cpu_cores" for i in range(400)]
    for k in range(3):
        for sid in sids:
            magnitude = 10.0 ** rnd.randint(-12, 18)
            w.add(T0 + 10 * k, sid, rnd.choice([1, -1]) * rnd.random() * magnitude if k else float(rnd.randint(0, 10**9)))
    out = w.advance(T0 + 60, node="n1")
    assert len(out) == 800
    assert all(encode(decode(Rollup, v)) == v for _, v in out)


def test_a_node_state_of_the_earlier_dict_layout_loads_and_closes_its_windows_exactly() -> None:
    import pickle

    pane = {SID: [1.0, 4.0, 7.0, 3, 2.0, float(T0 + 45)]}
    closed = {T0 - 60: {SID: [0.5, 0.5, 0.5, 1, 0.5, float(T0 - 30)]}}
    v1 = pickle.dumps((1, "c1/n1", 41, float(T0 + 45), 0.0, {T0: pane}, closed, T0, float(T0 + 45), {}, {}, None))
    st = NodeState.loads(v1)
    assert (st.offset, st.windows.closed_through) == (41, T0)
    got = by_window(st.windows.advance(T0 + 60, node="n1"))
    assert (got[("1m", T0)].sum, got[("1m", T0)].count, got[("1m", T0)].last) == (7.0, 3, 2.0)
    assert (got[("5m", T0 - 240)].count, got[("5m", T0 - 240)].min) == (4, 0.5)


def test_tick_of_a_silent_node_closes_its_windows_and_resolves_its_alert_at_last_seen_plus_staleness(tmp_path) -> None:  # noqa: ANN001
    from streams.rules import RuleEngine

    rules = tmp_path / "rules.yaml"
    rules.write_text("groups:\n  - name: g\n    rules:\n      - alert: NodeCPUHigh\n        metric: node.cpu_cores\n"
                     "        op: '>'\n        threshold: 2.0\n        severity: warning\n")
    settings = load_settings(streams={"window_grace_s": 0, "rules_files": [rules], "use_default_rules": False})
    pipe = Pipeline(settings, engine=RuleEngine.from_settings(settings))
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
    assert st.last_ts == last_seen and pipe.process(st, scrape(80, 1.0), offset=3).samples == 5
