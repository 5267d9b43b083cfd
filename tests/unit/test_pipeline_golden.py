"""The worker's pipeline on a seeded simulated fleet, pinned: an optimisation must leave every output byte where it was."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

from collectors.simulator import Fleet
from models.codec import decode_fast, encode
from models.records import NodeScrape
from models.settings import load_settings
from streams.app import make_rule_engine
from streams.pipeline import NodeState, Pipeline

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone.utc)

GOLDEN = "0c91b5235841253fe6191653f6b1b160d95637b4abccf15b2d980182955e6dc4"
"""sha256 of the run below (computed with the pipeline of 2026-12-07, before the per-sample speed-ups)."""
COUNTS = {"rollups": 7295, "partials": 3425, "anomalies": 12, "transitions": 8, "samples": 448576,
          "entries": 5631}


def _run() -> tuple[str, dict[str, int]]:
    """Scrapes as the worker reads them (bytes, fast decoder) through one Pipeline, as the worker drives it.

    Every output in order (rollups, partials, anomalies, transitions), a checkpoint (``chunks()``) every
    fourth scrape, the state of every node reloaded from its entries halfway, and the silent nodes ticked
    at the end: windows, detectors (their learned state is in the entries), rules and persistence.
    """
    settings = load_settings()
    fleet = Fleet(clusters=1, nodes_per_cluster=3, pods_per_node=6, seed=11, incident_every_s=60,
                  restart_every_s=1800, rollout_every_s=600)
    pipe = Pipeline(settings, engine=make_rule_engine(settings))
    states: dict[str, NodeState] = {}
    saved: dict[str, dict[bytes, bytes]] = {}
    h = hashlib.sha256()
    counts = dict.fromkeys(("rollups", "partials", "anomalies", "transitions", "samples", "entries"), 0)

    def record(out) -> None:
        for key, value in out.rollup_records:
            h.update(key.encode() + b"\0" + value)
        for p in out.partials:
            h.update(p)
        for a in out.anomalies:
            h.update(encode(a))
        for t in out.transitions:
            h.update(encode(t))
        for name, n in (("rollups", len(out.rollup_records)), ("partials", len(out.partials)),
                        ("anomalies", len(out.anomalies)), ("transitions", len(out.transitions)),
                        ("samples", out.samples)):
            counts[name] += n

    steps, offset = 400, 0
    for k in range(steps):
        scrapes, _, _ = fleet.step(T0 + timedelta(seconds=15 * k))
        for s in scrapes:
            scrape = decode_fast(NodeScrape, encode(s))
            st = states.get(scrape.key) or states.setdefault(scrape.key, pipe.new_state(scrape.key))
            record(pipe.process(st, scrape, offset=offset))
            offset += 1
            if offset % 4 == 0:
                entries = saved.setdefault(st.key, {})
                for ck, cv in st.chunks():
                    h.update(ck + b"\0" + (cv or b"-"))
                    counts["entries"] += 1
                    if cv is None:
                        entries.pop(ck, None)
                    else:
                        entries[ck] = cv
        if k == steps // 2:  # a restart: every node from what its checkpoints wrote
            for key, st in list(states.items()):
                for ck, cv in st.chunks(everything=True):
                    saved.setdefault(key, {})[ck] = cv
                entries = saved[key]
                header = entries[key.encode()]
                states[key] = NodeState.loads(header, [v for ck, v in entries.items() if ck != key.encode()], pipe)
    for key in sorted(states):
        st = states[key]
        record(pipe.tick(st, st.last_ts + 400.0))
    return h.hexdigest(), counts


def test_a_seeded_fleet_through_the_pipeline_produces_the_pinned_outputs_and_state() -> None:
    digest, counts = _run()
    assert counts == COUNTS
    assert digest == GOLDEN
