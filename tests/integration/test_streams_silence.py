"""A node (or an Event's object) that falls silent: its windows close, its alerts go stale, its state is forgotten.

Real Kafka, real ``kubepulse worker`` processes. Everything is on one partition, so the node that keeps
sending ("alive") moves the partition's event time past the silent one ("gone"), across a worker restart.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from kubepulse._cli_streams import create_topics
from models.codec import decode
from models.records import AlertTransition, EntityRollup, KubeEvent, NodeSample, NodeScrape, ObjectRef
from models.settings import load_settings
from streams.topics import ALERTS, EVENTS, METRICS, ROLLUPS
from tests.kafkautil import new_run_id, produce
from tests.streamsutil import Worker, read_until

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
RULES = Path(__file__).parent / "data" / "streams_rules.yaml"


def scrape(node: str, i: int, cpu: float) -> NodeScrape:
    return NodeScrape(cluster="c1", node=node, timestamp=T0 + timedelta(seconds=15 * i), source="simulator",
                      node_stats=NodeSample(cpu_cores=cpu))


def event(uid: str, pod: str, reason: str, at: datetime) -> KubeEvent:
    return KubeEvent(cluster="c1", uid=uid, namespace="shop", name=f"{pod}.{uid}", reason=reason, type="Warning",
                     message=reason, last_seen=at, involved_object=ObjectRef(kind="Pod", name=pod, namespace="shop"))


async def test_a_silent_node_is_closed_resolved_and_forgotten_by_its_partitions_clock_across_a_restart(
    stack: dict[str, str], tmp_path: Path
) -> None:
    run = new_run_id()
    settings = load_settings(
        kafka={"topic_prefix": f"t{run}.", "consumer_group": f"kp-test-{run}", "topic_partitions": 1},
        streams={"window_grace_s": 0, "checkpoint_interval_s": 0.5, "node_state_ttl_s": 600},
        http_port=0,
    )
    await create_topics(settings)
    env = {"KUBEPULSE_STREAMS__RULES_FILES": f'["{RULES}"]', "KUBEPULSE_STREAMS__DISPATCH_ALERTS": "false",
           "KUBEPULSE_STREAMS__NODE_STATE_TTL_S": "600"}
    metrics, alerts = METRICS.named(settings.kafka.topic_prefix), ALERTS.named(settings.kafka.topic_prefix)

    def alerts_of(msgs: list, label: str, value: str) -> list[AlertTransition]:
        got = [decode(AlertTransition, v) for _, v in msgs]
        return [t for t in got if t.labels.get(label) == value]

    # "gone" runs hot (NodeCPUHigh: > 2 for 1m fires at T0 + 60 s) and sends its last scrape at T0 + 105 s.
    w1 = Worker(settings, tmp_path / "w1.log", **env)
    try:
        await produce(settings, metrics, [(f"c1/{n}", scrape(n, i, cpu)) for i in range(8)
                                          for n, cpu in (("gone", 3.0), ("alive", 0.5))])
        await produce(settings, EVENTS.named(settings.kafka.topic_prefix), [("c1/shop/cart-1", event("e1", "cart-1", "OOMKilled", T0))])
        msgs = await read_until(settings, alerts, lambda m: alerts_of(m, "node", "gone") and alerts_of(m, "pod", "cart-1"))
        assert [t.status for t in alerts_of(msgs, "node", "gone")] == ["firing"], w1.log()
    finally:
        w1.stop()  # SIGTERM: checkpoints on the way out; "gone" is now only in the table

    w2 = Worker(settings, tmp_path / "w2.log", **env)
    try:
        # Only "alive" sends, up to T0 + 750 s: past gone's staleness (T0 + 405 s) and its TTL (T0 + 705 s).
        await produce(settings, metrics, [("c1/alive", scrape("alive", i, 0.5)) for i in range(8, 51)])
        # Another object's Event 11 minutes later: the OOMKilled window (10m) of cart-1 has aged out by then.
        await produce(settings, EVENTS.named(settings.kafka.topic_prefix),
                      [("c1/shop/cart-2", event("e2", "cart-2", "Pulled", T0 + timedelta(minutes=11)))])
        msgs = await read_until(settings, alerts, lambda m: len(alerts_of(m, "node", "gone")) >= 2
                                and len(alerts_of(m, "pod", "cart-1")) >= 2)
        gone = alerts_of(msgs, "node", "gone")
        assert [t.status for t in gone] == ["firing", "resolved"], w2.log()
        assert gone[1].fingerprint == gone[0].fingerprint
        assert gone[1].ends_at == T0 + timedelta(seconds=105 + 300), "stale at last seen + rules_stale_after_s"
        oom = alerts_of(msgs, "pod", "cart-1")
        assert [(t.status, t.ends_at) for t in oom] == [("firing", None), ("resolved", T0 + timedelta(minutes=10))]
        assert alerts_of(msgs, "node", "alive") == []

        # gone's last minute (T0+60..120 s, 4 scrapes) had no scrape of its own after it to close it.
        eid = "c1/-/node:gone/-"

        def gone_rollups(m: list) -> dict:
            return {(r.window, r.window_start): r for r in (decode(EntityRollup, v) for k, v in m if k == eid)}

        rolls = gone_rollups(await read_until(settings, ROLLUPS.named(settings.kafka.topic_prefix),
                                              lambda m: ("1h", T0) in gone_rollups(m)))
        last = rolls[("1m", T0 + timedelta(minutes=1))]
        cpu = last.metrics["node.cpu_cores"]
        assert (cpu.count, cpu.max, last.window_end) == (4, 3.0, T0 + timedelta(minutes=2))
        assert rolls[("1h", T0)].metrics["node.cpu_cores"].count == 8, "its open hour was published when it was forgotten"

        # Forgotten past the TTL: the table's changelog ends with a tombstone for gone, not for alive.
        changelog = f"{settings.kafka.consumer_group}-node_to_state-changelog"

        def last_values(m: list) -> dict:
            return {k: v for k, v in m}

        log = await read_until(settings, changelog, lambda m: last_values(m).get("c1/gone", b"") is None, timeout=60)
        final = last_values(log)
        assert final["c1/gone"] is None and final["c1/gone\x1f"] is None, w2.log()
        assert final["c1/alive"] and final["c1/alive\x1f"], "the node that kept sending is still in the table"
    finally:
        w2.stop()
