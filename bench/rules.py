"""Benchmark of the rule engine's hot path: observe_entity with the default pack.

Builds realistic node scrapes (a node, 30 pods of 1-3 containers, a volume on
every fifth pod, requests and limits as a cluster has them), cuts them into
entities once, then times ``observe_entity`` over many scrapes whose values
move (so predict and threshold rules do real work, and a few alerts fire).
A sample is one non-null metric value of an entity. The last line printed is
one JSON object.

    python bench/rules.py [--nodes 50] [--scrapes 40]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.records import ContainerSample, Filesystem, NodeSample, NodeScrape, PodSample, Resources, Volume  # noqa: E402
from models.series import Entity, entities  # noqa: E402
from streams.rules import RuleEngine, load_default_rules  # noqa: E402

GiB = 1024**3
T0 = datetime(2026, 3, 1, tzinfo=timezone.utc)


def scrape(rng: random.Random, node: int, k: int) -> NodeScrape:
    pods = []
    for p in range(30):
        prng = random.Random(node * 1000 + p)  # the pod's fixed shape
        containers = []
        for c in range(prng.randint(1, 3)):
            lim_mem = prng.choice([256, 512, 1024, None]) and prng.choice([256, 512, 1024]) * 2**20
            lim_cpu = prng.choice([0.5, 1.0, 2.0, None])
            leak = 1.0 + (0.004 * k if (p + c) % 17 == 0 else 0.0)  # a few leak towards their limit
            ws = int((lim_mem or GiB) * min(1.2, prng.uniform(0.2, 0.8) * leak + rng.uniform(-0.01, 0.01)))
            cpu = max(0.0, prng.uniform(0.05, 0.9) * (lim_cpu or 1.0) + rng.uniform(-0.05, 0.05))
            containers.append(
                ContainerSample(
                    name=f"c{c}",
                    cpu_cores=cpu,
                    memory_working_set_bytes=ws,
                    memory_rss_bytes=ws // 2,
                    memory_usage_bytes=ws + 1000,
                    cpu_limit_share=cpu / lim_cpu if lim_cpu else None,
                    cpu_request_share=cpu / 0.1,
                    memory_limit_share=ws / lim_mem if lim_mem else None,
                    memory_request_share=ws / (128 * 2**20),
                    requests=Resources(cpu_cores=0.1, memory_bytes=128 * 2**20),
                    limits=Resources(cpu_cores=lim_cpu, memory_bytes=lim_mem),
                    restart_count=k // 20 if p == 3 else 0,
                    rootfs=Filesystem(used_bytes=10_000_000, capacity_bytes=100 * GiB),
                )
            )
        volumes = []
        if p % 5 == 0:
            used = int(50 * GiB + (k * 15 * 2e5 if p == 0 else 0) + rng.uniform(-1e6, 1e6))
            volumes.append(Volume(name="data", pvc_name=f"data-{p}", used_bytes=used, capacity_bytes=100 * GiB, available_bytes=100 * GiB - used, inodes_used=1000, inodes=100000))
        pods.append(
            PodSample(
                namespace=f"ns-{p % 6}",
                name=f"pod-{node}-{p}",
                workload_kind="Deployment",
                workload_name=f"wl-{p}",
                cpu_cores=sum(c.cpu_cores or 0 for c in containers),
                memory_working_set_bytes=sum(c.memory_working_set_bytes or 0 for c in containers),
                containers=containers,
                volumes=volumes,
                ephemeral_storage=Filesystem(used_bytes=1_000_000, capacity_bytes=100 * GiB),
            )
        )
    used = int(40 * GiB + rng.uniform(-1e6, 1e6))
    return NodeScrape(
        cluster="bench",
        node=f"node-{node}",
        timestamp=T0 + timedelta(seconds=15 * k),
        node_stats=NodeSample(
            cpu_cores=rng.uniform(1, 7),
            memory_working_set_bytes=int(20 * GiB),
            memory_available_bytes=int(10 * GiB),
            cpu_node_share=rng.uniform(0.1, 0.95),
            memory_node_share=rng.uniform(0.5, 0.92),
            fs=Filesystem(used_bytes=used, capacity_bytes=100 * GiB, available_bytes=100 * GiB - used),
        ),
        pods=pods,
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--nodes", type=int, default=50)
    ap.add_argument("--scrapes", type=int, default=40)
    args = ap.parse_args()
    rng = random.Random(1)
    batches: list[tuple[datetime, list[Entity]]] = []
    samples = 0
    for k in range(args.scrapes):
        for n in range(args.nodes):
            s = scrape(rng, n, k)
            ents = list(entities(s))
            samples += sum(1 for e in ents for _, v in e.metrics if v is not None)
            batches.append((s.timestamp, ents))
    engine = RuleEngine(load_default_rules())
    transitions = 0
    observe = engine.observe_entity
    start = time.perf_counter()
    for ts, ents in batches:
        for e in ents:
            transitions += len(observe(e, ts))
    elapsed = time.perf_counter() - start
    entities_n = sum(len(ents) for _, ents in batches)
    state_bytes = sum(len(engine.export_state(k) or b"") for k in engine.state_keys)
    result = {
        "bench": "rules.observe_entity",
        "rules": len(engine.compiled),
        "nodes": args.nodes,
        "scrapes": args.scrapes,
        "entities": entities_n,
        "samples": samples,
        "seconds": round(elapsed, 3),
        "samples_per_s": round(samples / elapsed),
        "entities_per_s": round(entities_n / elapsed),
        "transitions": transitions,
        "state_bytes_per_node": round(state_bytes / max(1, len(engine.state_keys))),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
