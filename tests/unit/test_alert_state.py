"""Alert state: fingerprints, sequences, staleness, keep_firing_for, and exact recovery from exported state."""

from __future__ import annotations

import random
from pathlib import Path

from models import fingerprint
from models.records import AlertTransition
from models.settings import load_settings
from streams.rules import RuleEngine, RuleState, entity_partition_key, load_default_rules
from tests.unit.test_rules_fixtures import anomaly, at, container, engine, pod_event, volume

RULES = """
groups:
  - name: g
    rules:
      - alert: MemoryNearLimit
        metric: container.memory_limit_share
        threshold: 0.9
        resolve_threshold: 0.85
        for: 1m
      - alert: OOMAhead
        kind: predict
        metric: container.memory_working_set_bytes
        limit_metric: container.memory_limit_bytes
        within: 1h
        window: 20m
        min_points: 10
      - alert: Restarting
        kind: rate
        metric: container.restart_count
        window: 5m
        counter: true
        threshold: 0
      - alert: CrashLooping
        kind: event
        reasons: [BackOff]
        count: 2
        window: 5m
        for: 1m
      - alert: Abnormal
        kind: anomaly
        count: 2
        window: 3m
"""


def _workload(seed: int, steps: int) -> list[tuple[str, object, float]]:
    """A deterministic mixed stream: scrapes of three containers, BackOff events, anomalies, ticks."""
    rng = random.Random(seed)
    items: list[tuple[str, object, float]] = []
    restarts = 0
    for i in range(steps):
        t = 15.0 * i
        for k, name in enumerate(("a", "b", "c")):
            share = 0.5 + 0.45 * ((i // (20 + 7 * k)) % 2) + rng.uniform(-0.04, 0.04)
            if name == "c" and rng.random() < 0.05:
                restarts += 1
            ws = 200e6 + (i % 150) * 3e6 + rng.uniform(-1e6, 1e6)
            ent = container(
                {
                    "container.memory_limit_share": share,
                    "container.memory_working_set_bytes": ws,
                    "container.memory_limit_bytes": 1e9,
                    "container.restart_count": float(restarts if name == "c" else 0),
                },
                name=name,
            )
            items.append(("entity", ent, t))
        if rng.random() < 0.08:
            items.append(("event", pod_event("BackOff", t, count=1 + i // 10, uid=f"ev-{i // 40}"), t))
        if rng.random() < 0.1:
            items.append(("anomaly", anomaly(t), t))
        if i % 4 == 3:
            items.append(("tick", None, t))
    return items


def _run(eng: RuleEngine, items: list[tuple[str, object, float]]) -> list[AlertTransition]:
    out: list[AlertTransition] = []
    for kind, obj, t in items:
        if kind == "entity":
            out += eng.observe_entity(obj, at(t))  # type: ignore[arg-type]
        elif kind == "event":
            out += eng.observe_event(obj)  # type: ignore[arg-type]
        elif kind == "anomaly":
            out += eng.observe_anomaly(obj)  # type: ignore[arg-type]
        else:
            out += eng.tick(at(t))
    return out


def test_state_exported_and_imported_mid_stream_gives_exactly_the_transitions_of_an_uninterrupted_run() -> None:
    items = _workload(3, 600)
    whole = _run(engine(RULES), items)
    assert {tr.labels["alertname"] for tr in whole} >= {"MemoryNearLimit", "Restarting", "CrashLooping", "Abnormal"}
    for cut in (137, len(items) // 2, len(items) - 50):
        first = engine(RULES)
        before = _run(first, items[:cut])
        saved = {key: first.export_state(key) for key in first.state_keys}
        second = engine(RULES)  # a new process
        for key, raw in saved.items():
            assert raw is not None
            second.import_state(key, raw)
        after = _run(second, items[cut:])
        assert [tr.model_dump() for tr in before + after] == [tr.model_dump() for tr in whole]


def test_redelivered_messages_already_in_the_state_emit_nothing_and_change_nothing() -> None:
    items = _workload(5, 300)
    eng = engine(RULES)
    whole = _run(eng, items)
    assert whole
    snapshot = {k: eng.export_state(k) for k in eng.state_keys}
    # Kafka redelivers the last 40 messages after a restart whose changelog already had them.
    again = _run(eng, [it for it in items[-40:] if it[0] != "tick"])
    assert again == []
    assert {k: eng.export_state(k) for k in eng.state_keys} == snapshot


def test_explicit_state_objects_work_like_the_engines_own_store() -> None:
    items = [it for it in _workload(9, 200) if it[0] == "entity"]
    own = _run(engine(RULES), items)
    eng = engine(RULES)
    states: dict[str, RuleState] = {}
    explicit = []
    for _, ent, t in items:
        key = entity_partition_key(ent)  # type: ignore[arg-type]
        st = states.setdefault(key, eng.new_state())
        explicit += eng.observe_entity(ent, at(t), state=st)  # type: ignore[arg-type]
        if st.dirty:
            states[key] = eng.state_from_bytes(st.to_bytes())  # what a Faust table round trip does
    assert [t.model_dump() for t in explicit] == [t.model_dump() for t in own] and own
    assert list(states) == ["c1/n1"] and eng.state_keys == []


def test_fingerprint_is_alertmanagers_hash_of_the_labels_and_stable_across_engines() -> None:
    a = engine(RULES).observe_entity(container({"container.restart_count": 0.0}), at(0))
    fired = []
    for eng in (engine(RULES), engine(RULES)):
        eng.observe_entity(container({"container.restart_count": 0.0}), at(0))
        fired += eng.observe_entity(container({"container.restart_count": 1.0}), at(15))
    assert a == [] and len(fired) == 2
    assert fired[0].fingerprint == fired[1].fingerprint == fingerprint(fired[0].labels)
    # Pinned: Prometheus' LabelSet.Fingerprint of these labels; a change here breaks PagerDuty dedup keys.
    assert fingerprint({"alertname": "Restarting", "severity": "warning"}) == fingerprint({"severity": "warning", "alertname": "Restarting"})
    assert fired[0].labels == {
        "alertname": "Restarting",
        "severity": "warning",
        "cluster": "c1",
        "node": "n1",
        "namespace": "shop",
        "pod": "cart-1",
        "workload": "cart",
        "workload_kind": "Deployment",
        "container": "cart",
    }


def test_a_silent_series_resolves_at_last_seen_plus_staleness_whenever_tick_runs() -> None:
    for tick_at in (406, 3000):
        eng = engine(RULES, stale_after_s=300)
        for i in range(8):
            eng.observe_entity(container({"container.memory_limit_share": 0.95}), at(15 * i))
        assert eng.tick(at(15 * 7 + 299)) == []
        out = eng.tick(at(tick_at))
        assert [tr.status for tr in out] == ["resolved"]
        assert out[0].ends_at == at(15 * 7 + 300)
        assert eng.export_state("c1/n1") is not None and len(eng.state_for("c1/n1")) == 0


def test_keep_firing_for_holds_an_alert_through_a_short_dip() -> None:
    eng = engine(RULES.replace("        for: 1m\n      - alert: OOMAhead", "        keep_firing_for: 2m\n      - alert: OOMAhead"))
    values = [0.95] * 4 + [0.5] * 4 + [0.95] * 4 + [0.5] * 12
    out = [(i, tr) for i, v in enumerate(values) for tr in eng.observe_entity(container({"container.memory_limit_share": v}), at(15 * i))]
    statuses = [(i, tr.status) for i, tr in out]
    assert statuses == [(0, "firing"), (20, "resolved")]
    assert out[1][1].ends_at == at(15 * 12 + 120)  # left at the 13th scrape, held 2 minutes


def test_sequence_strictly_increases_per_fingerprint_even_after_state_is_forgotten() -> None:
    eng = engine(RULES, stale_after_s=60)
    seqs = []
    for episode in range(3):
        base = episode * 1000
        for i in range(6):
            seqs += [tr.sequence for tr in eng.observe_entity(container({"container.memory_limit_share": 0.97}), at(base + 15 * i))]
        seqs += [tr.sequence for tr in eng.tick(at(base + 900))]  # silence: resolved and forgotten
    assert len(seqs) == 6 and seqs == sorted(seqs) and len(set(seqs)) == 6


def test_engine_from_settings_uses_the_default_pack_unless_files_are_given(tmp_path: Path) -> None:
    default = RuleEngine.from_settings(load_settings(streams={"rules_stale_after_s": 120}))
    assert len(default.compiled) == len(load_default_rules()) >= 15 and default.stale_after_s == 120
    f = tmp_path / "mine.yaml"
    f.write_text(RULES)
    mine = RuleEngine.from_settings(load_settings(streams={"rules_files": [str(f)]}))
    assert [c.rule.name for c in mine.compiled] == ["MemoryNearLimit", "OOMAhead", "Restarting", "CrashLooping", "Abnormal"]
    none = RuleEngine.from_settings(load_settings(streams={"use_default_rules": False}))
    assert none.compiled == []


def test_state_of_rules_removed_from_the_files_is_dropped_on_import() -> None:
    eng = engine(RULES)
    eng.observe_entity(container({"container.memory_limit_share": 0.95}), at(0))
    raw = eng.export_state("c1/n1")
    assert raw is not None
    slimmer = engine(RULES.split("      - alert: OOMAhead")[0].replace("MemoryNearLimit", "Renamed"))
    slimmer.import_state("c1/n1", raw)
    assert len(slimmer.state_for("c1/n1")) == 0


def test_the_default_pack_pages_a_full_persistent_volume_with_mixin_labels() -> None:
    eng = RuleEngine(load_default_rules())
    out = []
    for i in range(6):
        out += eng.observe_entity(volume(98.5, 100.0), at(15 * i))
    names = {(tr.labels["alertname"], tr.labels["severity"]) for tr in out}
    assert names == {("KubePersistentVolumeFillingUp", "critical")}
    assert out[0].labels["persistentvolumeclaim"] == "data-db-0"
    assert out[0].annotations["runbook_url"].endswith("/kubepersistentvolumefillingup")
    assert "98.5% full" in out[0].annotations["description"]
    # The same volume without a claim (an emptyDir) is not a PersistentVolume alert.
    assert eng.observe_entity(volume(98.5, 100.0, pvc=None, pod="db-1"), at(0)) == []


def test_the_default_pack_pages_a_namespace_quota_almost_full_after_15m_and_exceeded_apart() -> None:
    from models.records import QuotaScrape
    from models.series import quota_entities

    eng = RuleEngine(load_default_rules())

    def observe(i: int, cpu: float, memory: float) -> list:
        q = QuotaScrape(cluster="c1", namespace="shop", name="compute", timestamp=at(60 * i),
                        hard={"requests.cpu": 10.0, "requests.memory": 100.0}, used={"requests.cpu": cpu, "requests.memory": memory})
        return [t for e in quota_entities(q) for t in eng.observe_entity(e, q.timestamp, state=st)]

    st = eng.new_state()
    out = [t for i in range(15) for t in observe(i, 9.5, 120.0)]
    assert out == [], "nothing before the 15 minutes of `for`"
    out = observe(15, 9.5, 120.0)
    got = {(t.labels["alertname"], t.labels["resource"], t.labels["severity"], t.value) for t in out}
    assert got == {("KubeQuotaAlmostFull", "requests.cpu", "info", 0.95), ("KubeQuotaExceeded", "requests.memory", "warning", 1.2)}
    almost = next(t for t in out if t.labels["alertname"] == "KubeQuotaAlmostFull")
    assert almost.labels["resourcequota"] == "compute" and almost.labels["namespace"] == "shop"
    assert almost.annotations["description"] == "Namespace shop is using 95% of its requests.cpu quota (compute)."
    assert almost.annotations["runbook_url"].endswith("/kubequotaalmostfull")
    # Fully used is not "almost full": that alert resolves and KubeQuotaFullyUsed takes over after its own 15m.
    resolved = observe(16, 10.0, 50.0)
    assert {(t.labels["alertname"], t.status) for t in resolved} == {("KubeQuotaAlmostFull", "resolved"), ("KubeQuotaExceeded", "resolved")}
    full = [t for i in range(17, 33) for t in observe(i, 10.0, 50.0)]
    assert [(t.labels["alertname"], t.status, t.starts_at) for t in full] == [("KubeQuotaFullyUsed", "firing", at(60 * 16))]
