"""How the worker makes and feeds detectors: units as resolution, which metrics are scored, and the simulated fleet."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from collectors.simulator import Fleet, IncidentPlan
from collectors.simulator.labels import Detection, score
from models.detectors import DEFAULT_DETECTOR, detector_from_bytes
from models.settings import Settings
from streams.scoring import new_detector, resolution, scored_metric_names, scored_samples

T0 = datetime(2026, 1, 5, tzinfo=UTC)


def test_the_default_detector_gets_its_series_unit_as_resolution_and_named_ones_their_own_defaults():
    errs = new_detector("default", metric="node.network.rx_errors_per_s")
    assert (errs.name, errs.params()["resolution"]) == (DEFAULT_DETECTOR, 1.0)
    assert new_detector("default", metric="container.memory_working_set_bytes").params()["resolution"] == 2**20
    assert new_detector("default", metric="pod.network.tx_bytes_per_s").params()["resolution"] == 1024.0
    assert new_detector("default", metric="volume.used_share").params()["resolution"] == 0.001
    assert new_detector("default").params() == new_detector("seasonal_lik").params()  # no unit, no spike
    assert new_detector("seasonal_z", metric="pod.cpu_cores").params()["resolution"] == 0.0
    assert resolution("quota.used") == 0.0
    # what the worker stores: the streams' parameters travel with the state
    assert detector_from_bytes(errs.to_bytes()).params() == errs.params()
    assert len(errs.to_bytes()) <= 310  # the two parameters it adds cost 20 bytes


def test_default_scored_metrics_leave_out_log_filled_filesystems_but_keep_volumes():
    scored = scored_metric_names(Settings().streams.scored_metrics)
    assert {"volume.used_share", "pod.network.rx_errors_per_s", "node.memory_node_share", "container.cpu_cores"} <= scored
    assert not scored & {"container.rootfs.used_share", "pod.ephemeral_storage.used_share", "node.fs.used_share"}


def run_fleet(hours: float, *, inject=(), seed: int = 3) -> tuple[list, list, float, dict]:
    """A one-node fleet through the worker's scored metrics and detectors: (records, incidents, series-days, blips)."""
    s = Settings().streams
    scored = scored_metric_names(s.scored_metrics)
    fleet = Fleet(clusters=1, nodes_per_cluster=1, pods_per_node=10, seed=seed, incidents="none", inject=inject,
                  rollout_every_s=None, restart_every_s=None)
    dets: dict = {}
    records, injected = [], []
    blips = {"errors_nonzero": 0}
    x: dict = {}
    steps = int(hours * 3600 / 15)
    for i in range(steps):
        ts = T0 + timedelta(seconds=15 * i)
        scrapes, _, new = fleet.step(ts)
        injected += new
        for scrape in scrapes:
            for sid, metric, v in scored_samples(scrape, scored):
                det = dets.get(sid) or dets.setdefault(sid, new_detector(s.detector, metric=metric))
                x["value"] = v
                if det.score_one(x, t=ts.timestamp()) > s.anomaly_threshold:
                    records.append((sid, ts, scrape.node))
                det.learn_one(x, t=ts.timestamp())
                if metric.endswith("errors_per_s") and v and not injected:
                    blips["errors_nonzero"] += 1
    return records, injected, len(dets) * steps * 15 / 86400, blips


def test_a_healthy_node_gives_no_anomaly_record_at_the_default_threshold_even_with_dropped_packets():
    records, _, series_days, blips = run_fleet(12)
    assert series_days > 50
    assert blips["errors_nonzero"] >= 3  # interfaces did drop single packets (1 error in 15 s)
    assert records == []


@pytest.mark.parametrize("kind", ["network_storm", "cpu_spike", "node_memory_pressure"])
def test_an_incident_on_a_scored_metric_is_found_on_its_own_entity_within_five_scrapes(kind):
    records, incidents, series_days, _ = run_fleet(7, inject=[IncidentPlan(kind, 6 * 3600)])
    (inc,) = incidents
    found = score(incidents, [Detection.from_series(sid, ts, node=node) for sid, ts, node in records],
                  interval_s=15, series_days=series_days)
    assert found.detected == 1 and found.delays_scrapes[0] <= 5, (kind, records[:5])
    # Nothing fires outside the incident; inside it, other series of its node may (a storm's node-wide errors).
    assert all(inc.start <= ts <= inc.end + timedelta(minutes=5) and node == inc.node for _, ts, node in records)
