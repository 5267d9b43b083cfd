"""Benchmark: one collector process scraping 1,000 nodes x 30 pods from the test API server every 15 s.

The test API server runs in a separate process (so its CPU is not the
collector's); records go to the real Kafka under a throwaway topic prefix.
The collector's CPU is measured with ``resource.getrusage`` in its own
process. The last line printed is one JSON object::

    {"nodes", "pods", "interval_s", "achieved_interval_s", "scrapes_per_s", "cpu_s_per_interval", ...}

``achieved_interval_s`` is the slowest full pass (it must stay under the
interval), ``cpu_s_per_interval`` the most CPU-seconds one pass used.

    .venv/bin/python bench/collector.py --nodes 1000 --pods-per-node 30 --passes 3
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from collectors import Collector, PassReport  # noqa: E402
from models.settings import ClusterSettings, load_settings  # noqa: E402


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def run(args: argparse.Namespace) -> dict[str, object]:
    tmp = Path(tempfile.mkdtemp(prefix="kp-bench-"))
    kc = tmp / "kubeconfig"
    server = subprocess.Popen(
        [sys.executable, "-m", "collectors.testing", "--nodes", str(args.nodes), "--pods-per-node", str(args.pods_per_node), "--kubeconfig", str(kc), "--latency", str(args.latency)],
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = server.stdout.readline() if server.stdout else ""
        if not line.startswith("ready"):
            raise SystemExit(f"the test API server did not start: {line!r}")
        settings = load_settings(
            kafka={"topic_prefix": f"bench-{uuid.uuid4().hex[:8]}."},
            clusters=[ClusterSettings(name="bench", kubeconfig=kc)],
            kubernetes={"interval_s": args.interval, "jitter_s": 0.0, "concurrency": args.concurrency},
            http_port=0,
        )
        passes: list[tuple[PassReport, float]] = []
        cpu_mark = [_cpu()]

        def on_pass(report: PassReport) -> None:
            now = _cpu()
            passes.append((report, now - cpu_mark[0]))
            print(
                f"pass {len(passes)}: {report.nodes} nodes, {report.pods} pods, {report.errors} errors, "
                f"{report.duration_s:.2f} s wall, {now - cpu_mark[0]:.2f} CPU-s",
                file=sys.stderr,
                flush=True,
            )

        async with Collector(settings, events=False, on_pass=on_pass) as collector:
            orig = collector._one

            async def timed(name: str) -> PassReport:
                cpu_mark[0] = _cpu()  # CPU of this pass only, not of the idle wait before it
                return await orig(name)

            collector._one = timed  # type: ignore[method-assign]
            t0 = time.monotonic()
            await collector.run(iterations=args.passes)
            wall = time.monotonic() - t0
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)
    reports = [r for r, _ in passes]
    slowest = max(r.duration_s for r in reports)
    total_nodes = sum(r.nodes for r in reports)
    return {
        "nodes": args.nodes,
        "pods": args.nodes * args.pods_per_node,
        "interval_s": args.interval,
        "achieved_interval_s": round(slowest, 3),
        "scrapes_per_s": round(total_nodes / sum(r.duration_s for r in reports), 1),
        "cpu_s_per_interval": round(max(c for _, c in passes), 3),
        "passes": len(reports),
        "errors": sum(r.errors for r in reports),
        "published_nodes_per_pass": [r.nodes for r in reports],
        "wall_s": round(wall, 1),
        "concurrency": args.concurrency,
        "kubelet_latency_s": args.latency,
        "within_budget": slowest < args.interval and max(c for _, c in passes) < args.interval,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=1000)
    p.add_argument("--pods-per-node", type=int, default=30)
    p.add_argument("--interval", type=float, default=15.0)
    p.add_argument("--passes", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--latency", type=float, default=0.02, help="seconds the fake kubelet takes per Summary")
    args = p.parse_args()
    result = asyncio.run(run(args))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
