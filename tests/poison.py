"""Bad input for the bad-input-everywhere test: poison records that break the contract, and good records at its edges.

Poison records are what a broken or hostile producer writes to kubepulse's input topics: bytes that are not
UTF-8, JSON cut short, the wrong shape, NaN and infinity, negative counters, names too long or holding a
``/``, unknown fields, an unknown schema version, naive timestamps, strings where numbers go, empty values
and records close to the broker's 1 MiB limit. Every one must be dead-lettered by each consumer that reads
it, with a reason, and stop nothing.

Edge records are valid and must arrive: every name at Kubernetes' maximum length (253 for nodes and pods, 63
for namespaces, containers and volumes, label values), unicode everywhere, 200 labels on a pod, every
optional empty.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta

from models.codec import encode
from models.records import (ContainerSample, Filesystem, Interface, KubeEvent, NodeSample, NodeScrape, ObjectRef, PodSample,
                            QuotaScrape, Resources, Volume)

__all__ = ["Poison", "poison_records", "edge_scrape", "edge_event", "edge_quota", "long_name"]


@dataclass(frozen=True, slots=True)
class Poison:
    """One poison record: what it breaks (``kind``), its key and value."""

    kind: str
    key: str
    value: bytes


def long_name(seed: str, n: int) -> str:
    """A name of exactly ``n`` characters, unicode included, no ``/`` (so still a valid name slot)."""
    base = f"{seed}-ünï-名前-🚀-"
    return (base * (n // len(base) + 1))[:n]


def _scrape_json(ts: datetime, **node_stats: object) -> dict:
    return {"cluster": "poison", "node": "p1", "timestamp": ts.isoformat(), "node_stats": dict(node_stats)}


def _metrics_poison(rng: random.Random, i: int, ts: datetime) -> Poison:
    good = _scrape_json(ts, cpu_cores=1.0)
    text = json.dumps(good)
    kinds = [
        ("not_utf8", lambda: bytes(rng.randrange(128, 256) for _ in range(rng.randrange(1, 64)))),
        ("truncated_json", lambda: text[: rng.randrange(1, len(text) - 1)].encode()),
        ("not_an_object", lambda: rng.choice([b"[1, 2]", b'"scrape"', b"null", b"42", b"true"])),
        ("missing_fields", lambda: b"{}"),
        ("nan", lambda: text.replace("1.0", "NaN").encode()),
        ("infinity", lambda: text.replace("1.0", "Infinity").encode()),
        ("negative_bytes", lambda: json.dumps(_scrape_json(ts, memory_working_set_bytes=-1)).encode()),
        ("name_too_long", lambda: json.dumps({**good, "node": "n" * 254}).encode()),
        ("slash_in_name", lambda: json.dumps({**good, "node": "a/b"}).encode()),
        ("unknown_field", lambda: json.dumps({**good, "surprise": 1}).encode()),
        ("schema_version", lambda: json.dumps({**good, "schema_version": 99}).encode()),
        ("naive_timestamp", lambda: json.dumps({**good, "timestamp": ts.replace(tzinfo=None).isoformat()}).encode()),
        ("string_number", lambda: json.dumps(_scrape_json(ts, cpu_cores="1.0")).encode()),
        ("empty_value", lambda: b""),
        ("namespace_too_long", lambda: json.dumps({**good, "pods": [{"namespace": "n" * 64, "name": "p"}]}).encode()),
    ]
    kind, make = kinds[i % len(kinds)]
    return Poison(kind, f"poison/{i}", make())


def _events_poison(i: int, ts: datetime) -> Poison:
    good = {"cluster": "poison", "uid": f"u{i}", "namespace": "ns", "name": f"e{i}", "reason": "BackOff",
            "last_seen": ts.isoformat(), "involved_object": {"kind": "Pod", "name": "p"}}
    kinds = [
        ("missing_fields", {k: v for k, v in good.items() if k != "involved_object"}),
        ("negative_count", {**good, "count": -3}),
        ("uid_too_long", {**good, "uid": "u" * 254}),
        ("unknown_field", {**good, "extra": True}),
    ]
    kind, body = kinds[i % len(kinds)]
    return Poison(kind, f"poison/{i}", json.dumps(body).encode())


def _quotas_poison(i: int, ts: datetime) -> Poison:
    good = {"cluster": "poison", "namespace": "ns", "name": f"q{i}", "timestamp": ts.isoformat(), "hard": {"pods": 10}}
    kinds = [
        ("negative_quantity", {**good, "used": {"pods": -1}}),
        ("slash_in_name", {**good, "name": "a/b"}),
        ("string_quantity", {**good, "hard": {"pods": "10"}}),
    ]
    kind, body = kinds[i % len(kinds)]
    return Poison(kind, f"poison/{i}", json.dumps(body).encode())


def poison_records(ts: datetime, *, metrics: int, events: int, quotas: int, huge: int = 2, seed: int = 7) -> dict[str, list[Poison]]:
    """Poison per input kind (``metrics``, ``events``, ``quotas``), ``huge`` of the metrics ones ~900 KiB each."""
    rng = random.Random(seed)
    out = {
        "metrics": [_metrics_poison(rng, i, ts) for i in range(metrics - huge)],
        "events": [_events_poison(i, ts) for i in range(events)],
        "quotas": [_quotas_poison(i, ts) for i in range(quotas)],
    }
    for j in range(huge):
        # Valid JSON, invalid record: a 900 KiB string where a number goes (a stock broker takes up to 1 MiB).
        body = json.dumps(_scrape_json(ts, cpu_cores="x" * (900 * 1024)))
        out["metrics"].append(Poison("huge", f"poison/huge-{j}", body.encode()))
    return out


# --------------------------------------------------------------------------
# Good records at the edges of the contract
# --------------------------------------------------------------------------


def edge_scrape(cluster: str, node: str, ts: datetime, *, cpu: float, pods: int = 3) -> NodeScrape:
    """A valid scrape with every name at its maximum, unicode, 200 labels per pod and most optionals empty."""
    pod_list = []
    for p in range(pods):
        labels = {f"example.com/{long_name(f'k{k}', 40)}": long_name(f"v{k}", 63) for k in range(200)}
        pod_list.append(PodSample(
            namespace=long_name(f"ns{p}", 63),
            name=long_name(f"pod{p}", 253),
            uid=f"uid-{p}",
            labels=labels,
            workload_kind="Deployment",
            workload_name=long_name(f"wl{p}", 253),
            memory_working_set_bytes=100 << 20,
            requests=Resources(cpu_cores=0.1, memory_bytes=128 << 20),
            network=[Interface(name=long_name("eth", 15), rx_bytes_per_s=10.0)],
            volumes=[Volume(name=long_name(f"vol{p}", 63), pvc_name=long_name("claim", 253), used_bytes=1 << 20, capacity_bytes=1 << 30)],
            containers=[
                ContainerSample(name=long_name(f"c{p}", 63), cpu_cores=0.05, memory_working_set_bytes=50 << 20,
                                rootfs=Filesystem(), last_terminated_reason=long_name("reason", 200)),
                ContainerSample(name=long_name(f"empty{p}", 63)),  # every optional empty
            ],
        ))
    return NodeScrape(cluster=cluster, node=node, timestamp=ts, source="summary",
                      node_stats=NodeSample(cpu_cores=cpu, memory_working_set_bytes=1 << 30,
                                            network=[Interface(name="eth0")], conditions={long_name("Cond", 63): long_name("v", 253)}),
                      pods=pod_list)


def edge_event(cluster: str, ts: datetime, i: int) -> KubeEvent:
    return KubeEvent(cluster=cluster, uid=long_name(f"uid{i}", 253), namespace=long_name("ns0", 63), name=long_name(f"ev{i}", 253),
                     reason="BackOff", type="Warning", message=long_name("message", 20_000), count=i + 1,
                     first_seen=ts - timedelta(seconds=30), last_seen=ts,
                     involved_object=ObjectRef(kind="Pod", name=long_name("pod0", 253), namespace=long_name("ns0", 63)))


def edge_quota(cluster: str, ts: datetime) -> QuotaScrape:
    hard = {f"count/{long_name(f'r{k}', 60)}": 100.0 for k in range(200)}
    return QuotaScrape(cluster=cluster, namespace=long_name("ns0", 63), name=long_name("quota", 253), timestamp=ts,
                       hard=hard, used={k: 50.0 for k in hard})


def encoded(records: list) -> list[tuple[str, bytes]]:
    return [(r.key, encode(r)) for r in records]
