"""The rule kinds: threshold, rate of change, predicted exhaustion, events, anomalies, matchers, templates."""

from __future__ import annotations

import math
import random

from tests.unit.test_rules_fixtures import anomaly, at, container, engine, pod_event, volume

GiB = 1024**3

THRESHOLD = """
groups:
  - name: g
    rules:
      - alert: MemoryNearLimit
        metric: container.memory_limit_share
        op: ">"
        threshold: 0.9
        for: 5m
        severity: warning
        labels: {team: shop}
        annotations:
          summary: "{{ $labels.namespace }}/{{ $labels.pod }} at {{ $value | humanizePercentage }} of limit (threshold {{ $threshold }})"
"""


def test_threshold_with_for_fires_after_the_hold_and_resolves_when_the_value_drops() -> None:
    eng = engine(THRESHOLD)
    series = [0.5] * 4 + [0.95] * 30 + [0.5] * 4  # 15 s scrapes
    out = []
    for i, v in enumerate(series):
        for tr in eng.observe_entity(container({"container.memory_limit_share": v}), at(15 * i)):
            out.append((i, tr))
    assert [(i, tr.status) for i, tr in out] == [(24, "firing"), (34, "resolved")]
    firing, resolved = out[0][1], out[1][1]
    # starts_at is when the condition began (Prometheus' ActiveAt), 5 minutes before it fired.
    assert firing.starts_at == at(15 * 4) and at(15 * 24) - firing.starts_at >= (at(300) - at(0))
    assert resolved.ends_at == at(15 * 34) and resolved.starts_at == firing.starts_at
    assert firing.labels["alertname"] == "MemoryNearLimit" and firing.labels["team"] == "shop"
    assert firing.labels["pod"] == "cart-1" and firing.labels["severity"] == "warning"
    assert firing.value == 0.95 and firing.threshold == 0.9
    assert resolved.fingerprint == firing.fingerprint and resolved.sequence > firing.sequence


def test_a_dip_during_pending_restarts_the_for_timer() -> None:
    eng = engine(THRESHOLD)
    series = [0.95] * 15 + [0.5] + [0.95] * 15  # never 5 minutes in a row
    fired = [tr for i, v in enumerate(series) for tr in eng.observe_entity(container({"container.memory_limit_share": v}), at(15 * i))]
    assert fired == []


HYSTERESIS = """
groups:
  - name: g
    rules:
      - alert: CPUHigh
        metric: container.cpu_limit_share
        threshold: 0.9
        resolve_threshold: 0.8
"""


def test_a_value_hovering_at_the_threshold_pages_once_with_a_resolve_threshold() -> None:
    eng = engine(HYSTERESIS)
    hover = [0.91, 0.89, 0.92, 0.88, 0.905, 0.85, 0.93, 0.87] * 5 + [0.7]
    out = [tr for i, v in enumerate(hover) for tr in eng.observe_entity(container({"container.cpu_limit_share": v}), at(15 * i))]
    assert [tr.status for tr in out] == ["firing", "resolved"]
    assert out[1].ends_at == at(15 * (len(hover) - 1))


def test_without_a_resolve_threshold_the_same_hovering_value_would_flap() -> None:
    eng = engine(HYSTERESIS.replace("        resolve_threshold: 0.8\n", ""))
    hover = [0.91, 0.89, 0.92, 0.88]
    out = [tr for i, v in enumerate(hover) for tr in eng.observe_entity(container({"container.cpu_limit_share": v}), at(15 * i))]
    assert [tr.status for tr in out] == ["firing", "resolved", "firing", "resolved"]


PREDICT = """
groups:
  - name: g
    rules:
      - alert: VolumeFullSoon
        kind: predict
        metric: volume.used_bytes
        limit_metric: volume.capacity_bytes
        within: 4h
        window: 1h
        min_points: 20
        severity: critical
        annotations:
          description: "full in {{ $value | humanizeDuration }}"
"""


def test_predicted_disk_full_fires_hours_before_the_disk_is_full() -> None:
    eng = engine(PREDICT)
    rng = random.Random(7)
    cap = 100 * GiB
    # 40 % full, growing 5 GiB/h with noise: full in 12 h from the start, crosses "< 4 h" at ~8 h.
    first = None
    for i in range(0, 10 * 240):  # 10 h of 15 s scrapes
        used = 40 * GiB + 5 * GiB * (i * 15 / 3600) + rng.gauss(0, 0.05 * GiB)
        for tr in eng.observe_entity(volume(used, cap), at(15 * i)):
            first = first or (i, tr, used)
    assert first is not None
    i, tr, used = first
    hours = i * 15 / 3600
    assert 7.5 < hours < 8.5, hours
    assert used < 0.85 * cap  # about 4 hours before the disk is full
    assert tr.status == "firing" and 3 * 3600 < tr.value <= 4 * 3600
    assert tr.annotations["description"].startswith("full in 3h") and tr.threshold == 4 * 3600


def test_a_flat_noisy_disk_predicts_nothing() -> None:
    eng = engine(PREDICT)
    rng = random.Random(11)
    cap = 100 * GiB
    out = []
    for i in range(0, 8 * 240):
        used = 90 * GiB + rng.gauss(0, 1 * GiB)  # 90 % full, noisy, not growing
        out += eng.observe_entity(volume(used, cap), at(15 * i))
    assert out == []


OOM = """
groups:
  - name: g
    rules:
      - alert: OOMAhead
        kind: predict
        metric: container.memory_working_set_bytes
        limit_metric: container.memory_limit_bytes
        within: 1h
        window: 30m
        min_points: 20
"""


def test_oom_ahead_fires_for_a_leaking_container_and_ignores_one_without_a_limit() -> None:
    eng = engine(OOM)
    limit = 1 * GiB
    fired: dict[str, list[float]] = {"leaky": [], "nolimit": []}
    for i in range(0, 240):
        ws = 300e6 + 0.2e6 * (i * 15)  # +0.2 MB/s: reaches 1 GiB after ~3,870 s
        for name, lim in (("leaky", limit), ("nolimit", None)):
            ent = container({"container.memory_working_set_bytes": ws, "container.memory_limit_bytes": lim}, name=name)
            for tr in eng.observe_entity(ent, at(15 * i)):
                fired[name].append(i * 15)
    assert fired["nolimit"] == []
    assert fired["leaky"], "a steady leak towards the limit must be predicted"
    t_fire = fired["leaky"][0]
    assert t_fire < 3870 - 0.9 * 3600 + 60  # as soon as "OOM in < 1 h" is true (with enough points)
    assert t_fire < 3870  # and before the OOM kill


RATE = """
groups:
  - name: g
    rules:
      - alert: Restarting
        kind: rate
        metric: container.restart_count
        window: 10m
        counter: true
        op: ">"
        threshold: 0
        annotations:
          summary: "{{ $value | printf \\"%.4f\\" }} restarts/s"
"""


def test_rate_of_change_fires_while_a_counter_moves_and_resolves_when_it_stops() -> None:
    eng = engine(RATE)
    counts = [0] * 10 + [1, 1, 1, 2, 2, 3] + [3] * 60
    out = [(i, tr) for i, c in enumerate(counts) for tr in eng.observe_entity(container({"container.restart_count": c}), at(15 * i))]
    assert [(i, tr.status) for i, tr in out] == [(10, "firing"), (15 + 40, "resolved")]
    assert out[0][1].value == 1 / 600 and out[0][1].annotations["summary"] == "0.0017 restarts/s"


def test_rate_of_a_gauge_is_its_change_per_second_over_the_window() -> None:
    eng = engine(RATE.replace("counter: true", "counter: false").replace("threshold: 0", "threshold: 1000000"))
    out = []
    for i in range(0, 60):
        ws = 100e6 + (i * 15) * 2e6 if i >= 20 else 100e6  # 2 MB/s growth from 5 minutes on
        out += eng.observe_entity(container({"container.restart_count": ws}), at(15 * i))
    assert out and out[0].status == "firing"
    assert 1e6 < out[0].value <= 2e6


EVENTS = """
groups:
  - name: g
    rules:
      - alert: OOMKilled
        kind: event
        reasons: [OOMKilled]
        window: 10m
        annotations:
          summary: "{{ $labels.container }} in {{ $labels.namespace }}/{{ $labels.pod }} OOM-killed"
      - alert: CrashLooping
        kind: event
        reasons: [BackOff]
        message: "Back-off restarting failed container"
        count: 3
        window: 15m
"""


def test_an_oomkilled_event_raises_an_alert_for_that_container_and_it_resolves_after_the_window() -> None:
    eng = engine(EVENTS)
    out = eng.observe_event(pod_event("OOMKilled", 100))
    assert [tr.status for tr in out] == ["firing"]
    assert out[0].labels == {"alertname": "OOMKilled", "severity": "warning", "cluster": "c1", "namespace": "shop", "pod": "cart-1", "container": "cart"}
    assert out[0].annotations["summary"] == "cart in shop/cart-1 OOM-killed"
    assert eng.tick(at(100 + 599)) == []
    later = eng.tick(at(2000))
    assert [tr.status for tr in later] == ["resolved"] and later[0].ends_at == at(700)


def test_backoff_counts_raise_crash_looping_only_at_three_in_the_window() -> None:
    eng = engine(EVENTS)
    msg = "Back-off restarting failed container cart in pod cart-1_shop(abc)"
    # One aggregated Event object whose count grows, as the API server reports it.
    assert eng.observe_event(pod_event("BackOff", 60, count=1, message=msg)) == []
    assert eng.observe_event(pod_event("BackOff", 120, count=2, message=msg)) == []
    assert eng.observe_event(pod_event("BackOff", 120, count=2, message=msg)) == []  # a relist repeat adds nothing
    out = eng.observe_event(pod_event("BackOff", 180, count=3, message=msg))
    assert [tr.status for tr in out] == ["firing"] and out[0].value == 3
    # An image-pull back-off has the same reason but is not a crash loop.
    assert eng.observe_event(pod_event("BackOff", 200, uid="ev-2", pod="web-1", message="Back-off pulling image nginx")) == []


ANOMALY = """
groups:
  - name: g
    rules:
      - alert: Abnormal
        kind: anomaly
        metrics: [container.cpu_cores]
        count: 3
        window: 5m
        for: 2m
"""


def test_anomalies_sustained_for_minutes_fire_and_a_single_blip_does_not() -> None:
    eng = engine(ANOMALY)
    assert eng.observe_anomaly(anomaly(0)) == []
    assert eng.tick(at(1000)) == []  # a blip ages out without paging
    out = []
    for k in range(10):  # one anomaly per 30 s for 5 minutes
        out += eng.observe_anomaly(anomaly(2000 + 30 * k))
    assert [tr.status for tr in out] == ["firing"]
    # Third anomaly at 2060 starts pending; firing 2 minutes later, at a time computed from the data.
    assert out[0].starts_at == at(2060) and out[0].labels["metric"] == "container.cpu_cores"
    out = eng.tick(at(4000))
    assert [tr.status for tr in out] == ["resolved"]
    # The last anomaly (2270) ages out of the 5-minute window... but the window holds three until 2210 + 300.
    assert out[0].ends_at == at(2210 + 300)
    assert eng.observe_anomaly(anomaly(5000, metric="container.memory_working_set_bytes")) == []


MATCHERS = """
groups:
  - name: g
    rules:
      - alert: ProdCPU
        metric: container.cpu_cores
        threshold: 1
        matchers: ['namespace=~"prod-.*"', 'container!="istio-proxy"', 'pod!~"debug-.*"']
"""


def test_regex_and_not_equal_matchers_select_only_matching_entities() -> None:
    eng = engine(MATCHERS)
    cases = {
        ("prod-eu", "api-1", "api"): True,
        ("prod-eu", "api-1", "istio-proxy"): False,
        ("prod-eu", "debug-7", "api"): False,
        ("staging", "api-1", "api"): False,
        ("xprod-eu", "api-1", "api"): False,  # regexes are anchored, as in Prometheus
    }
    for (ns, pod, name), expected in cases.items():
        out = eng.observe_entity(container({"container.cpu_cores": 2.0}, ns=ns, pod=pod, name=name), at(0))
        assert bool(out) is expected, (ns, pod, name)


def test_annotations_render_labels_value_and_threshold_like_prometheus() -> None:
    eng = engine(THRESHOLD.replace("for: 5m", "for: 0s"))
    out = eng.observe_entity(container({"container.memory_limit_share": 0.9371}), at(0))
    assert out[0].annotations == {"summary": "shop/cart-1 at 93.71% of limit (threshold 0.9)"}


def test_transition_values_are_finite_or_absent() -> None:
    eng = engine(PREDICT.replace("within: 4h", "within: 1000d"))
    cap = 100 * GiB
    out = []
    for i in range(0, 400):
        out += eng.observe_entity(volume(50 * GiB + i * 1e6, cap), at(15 * i))
    for i in range(400, 400 + 4 * 240):
        out += eng.observe_entity(volume(50 * GiB + 400e6, cap), at(15 * i))  # stops growing
    assert [tr.status for tr in out] == ["firing", "resolved"]
    assert out[0].value is not None and math.isfinite(out[0].value) and out[1].value is None
