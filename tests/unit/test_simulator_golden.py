"""The simulator's output for a seed, pinned: a refactor of the generator must leave every byte where it was."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from collectors.simulator import Autoscaled, Fleet, Growing, Oversized
from models.codec import encode

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)

GOLDEN = {
    "incidents": "d69b6b20990f988ea35358377664af903f0f80874d40c5b1556ec60214be3540",
    "scenarios": "5315edeadfcc68743b911e2fb36f23ac481772c9c325a020a16e9a1887002b85",
}
"""sha256 of every record of the runs below, in order (computed with the generator of 2026-12-07)."""


def _digest(fleet: Fleet, steps: int) -> str:
    h = hashlib.sha256()
    for k in range(steps):
        scrapes, events, incidents = fleet.step(T0 + timedelta(seconds=15 * k))
        for r in (*scrapes, *events, *incidents, *fleet.quotas(), *(fleet.autoscalers() if fleet.has_autoscalers else ())):
            h.update(encode(r))
    return h.hexdigest()


def test_a_fleet_with_every_incident_kind_restarts_and_rollouts_produces_the_pinned_bytes() -> None:
    # Every incident kind (one a minute), crash loops, OOM restarts, evictions, rollouts, volumes, network storms.
    fleet = Fleet(clusters=2, nodes_per_cluster=3, pods_per_node=6, seed=11, incident_every_s=60,
                  restart_every_s=1800, rollout_every_s=600, containers_per_pod=None)
    assert _digest(fleet, 120) == GOLDEN["incidents"]


def test_a_fleet_with_scenarios_produces_the_pinned_bytes() -> None:
    fleet = Fleet(clusters=1, nodes_per_cluster=2, pods_per_node=3, seed=1, incidents="none",
                  scenarios=[Oversized(), Growing(), Autoscaled()])
    assert _digest(fleet, 60) == GOLDEN["scenarios"]
