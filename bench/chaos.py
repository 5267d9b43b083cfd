"""Faults on the real stack: a seeded fleet through two workers, the indexer and the dispatcher while things break.

One invocation makes two runs of the same seeded fleet (``collectors.simulator``, a fixed simulated start),
each on its own topics (a private Kafka broker, ``tests/privatestack.py``) and its own indices (the shared
Elasticsearch, reached through a TCP proxy this script owns, ``tests/indexingutil.CuttableProxy``):

1. fault-free: the baseline;
2. with faults, on a schedule (seconds after the source starts, ``FAULTS``): SIGKILL of one worker
   (restarted), a broker restart, Elasticsearch unreachable for 60 s (the proxy refuses connections; the
   shared server is never touched), PagerDuty answering 500 / 429 (``Retry-After``) / a hang past the
   notifier's timeout in turn for 60 s, and SIGKILL of the dispatcher in the middle of that (restarted).

Each run starts, as the CLI does: a source publishing the fleet's node scrapes, Events and ResourceQuotas at
``--speed`` times real time through the collector's own publisher (``collectors/_publish.Publisher``: it
resends what Kafka did not confirm, as ``kubepulse collect`` does), two ``kubepulse worker`` (dispatch off),
``kubepulse es index`` and ``kubepulse alerting run`` routing every alert to the strict PagerDuty (https) and
Slack fakes of ``tests/fakes``. A process that exits is restarted, as its Deployment would be (counted).
Peak RSS of each process is sampled from ``/proc`` twice a second.

Once the source is done and every consumer group has caught up, it counts: scrapes the source had confirmed
against their metrics documents in Elasticsearch (by the ids ``streams.index.documents_for`` derives), the
rollups on ``kubepulse.rollups.v2`` against the baseline's (by entity, window and start; values compared
too) and their documents, alert transitions (``(fingerprint, sequence)``) against the baseline's, and the
events the PagerDuty fake accepted (``dedup_key`` + ``event_action``) against the baseline's. The last line
printed is one JSON object; ``budget_ok`` is false if anything was lost or doubled or an RSS passed its
manifest's limit (``deploy/kubernetes/base``; the dispatcher runs inside the worker there, so the worker's).

    .venv/bin/python bench/chaos.py [--quick] [--seed 7] [--speed 15] [--duration 240] [--faults all]
                                    [--baseline DIR/baseline.json] [--skip-baseline] [--keep-indices]
"""

from __future__ import annotations

import argparse
import hashlib
import asyncio
import json
import re
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from bench.fleet import env_for  # noqa: E402
from bench.pipeline import free_port, proc_rss  # noqa: E402
from models.settings import Settings, load_settings  # noqa: E402

KUBEPULSE = Path(sys.executable).parent / "kubepulse"
MANIFESTS = ROOT / "deploy" / "kubernetes" / "base"
ROUTING_KEY = "kp0123456789abcdef0123456789abcd"
INTERVAL_S = 15.0

FAULTS: tuple[tuple[float, str], ...] = (
    (30.0, "kill_worker"),
    (60.0, "restart_broker"),
    (100.0, "cut_elasticsearch"),   # for 60 s
    (130.0, "pagerduty_outage"),    # for 60 s
    (150.0, "kill_dispatcher"),
)
"""(seconds after the source starts, fault). ``--quick`` halves the times; outages stay 60 s."""
OUTAGE_S = 60.0


# ----------------------------------------------------------------------------- the source


async def source_main(args: argparse.Namespace) -> None:
    """The seeded fleet to Kafka through the collector's publisher; writes what Kafka confirmed to ``--out``."""
    from collectors._publish import Publisher
    from collectors.errors import PublishFailed
    from collectors.simulator import Fleet, IncidentPlan
    from kubepulse._demo import DEMO_INJECT
    from models.codec import encode
    from streams.topics import EVENTS, INCIDENTS, METRICS, QUOTAS

    settings = load_settings()
    prefix = settings.kafka.topic_prefix
    fleet = Fleet(clusters=args.clusters, nodes_per_cluster=args.nodes, pods_per_node=args.pods, seed=args.seed,
                  interval_s=INTERVAL_S, incident_every_s=180.0, diurnal_period_s=3600.0,
                  inject=[IncidentPlan.parse(p) for p in DEMO_INJECT])
    start = datetime.fromisoformat(args.start)
    k = settings.kubernetes
    pub = Publisher(settings.kafka, timeout_s=k.publish_timeout_s, buffer_bytes=k.publish_buffer_bytes)
    await pub.start()
    confirmed: list[tuple[str, str]] = []
    lost: list[tuple[str, str]] = []
    wall0 = time.monotonic()

    async def settle(batch: list[tuple[str, str, asyncio.Future[None]]]) -> None:
        for kind, ident, fut in batch:
            try:
                await fut
            except PublishFailed:
                lost.append((kind, ident))
                continue
            if kind == "metrics":
                confirmed.append(tuple(ident.split(" ", 1)))  # type: ignore[arg-type]

    pending: list[tuple[str, str, asyncio.Future[None]]] = []
    try:
        for i in range(args.steps):
            now = start + timedelta(seconds=INTERVAL_S * i)
            scrapes, events, incidents = fleet.step(now)
            batch = []
            for s in scrapes:
                fut = await pub.send(METRICS.named(prefix), s.key, encode(s), cluster=s.cluster, kind="metrics")
                batch.append(("metrics", f"{s.key} {s.timestamp.isoformat()}", fut))
            for e in events:
                batch.append(("events", e.key, await pub.send(EVENTS.named(prefix), e.key, encode(e), cluster=e.cluster, kind="events")))
            if i % 4 == 0:  # once a minute, as the collector's quota pass
                for q in fleet.quotas():
                    batch.append(("quotas", q.key, await pub.send(QUOTAS.named(prefix), q.key, encode(q), cluster=q.cluster, kind="quotas")))
            for inc in incidents:
                batch.append(("incidents", inc.key, await pub.send(INCIDENTS.named(prefix), inc.key, encode(inc),
                                                                    cluster=inc.cluster, kind="incidents")))
            await settle(pending)  # the previous step's confirmations, while this one is in flight
            pending = batch
            delay = wall0 + (i + 1) * INTERVAL_S / args.speed - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
        await settle(pending)
    finally:
        await pub.stop()
    Path(args.out).write_text(json.dumps({"confirmed": confirmed, "lost": lost, "wall_s": time.monotonic() - wall0}))


# ----------------------------------------------------------------------------- processes


@dataclass
class Proc:
    """One child process, restarted when it exits (as its Deployment would restart it)."""

    name: str
    argv: list[str]
    env: dict[str, str]
    logdir: Path
    restart: bool = True
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    exits: list[int] = field(default_factory=list)
    rss_peak: int = 0
    done: bool = False

    def start(self) -> None:
        self.starts += 1
        log = open(self.logdir / f"{self.name}-{self.starts}.log", "wb")  # noqa: SIM115 - the child owns it
        cwd = self.logdir / self.name  # Faust's data directory is per process
        cwd.mkdir(exist_ok=True)
        self.popen = subprocess.Popen(self.argv, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, cwd=cwd)

    def sample(self) -> None:
        p = self.popen
        if p is None:
            return
        if p.poll() is None:
            try:
                self.rss_peak = max(self.rss_peak, proc_rss(p.pid))
            except OSError:
                pass
            return
        if self.done:
            return
        self.exits.append(p.returncode)
        if self.restart:
            self.start()
        else:
            self.done = True

    def kill(self) -> None:
        """SIGKILL, then start a new one (the supervisor's job, done at once)."""
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait()
        self.exits.append(-9)
        self.start()

    def stop(self, timeout: float = 60.0) -> None:
        p = self.popen
        self.done = True
        if p is None or p.poll() is not None:
            return
        p.terminate()
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def manifest_limits() -> dict[str, int]:
    """Memory limit in bytes of each Deployment's container (``kubepulse-worker`` -> bytes...)."""
    units = {"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}
    out: dict[str, int] = {}
    for path in MANIFESTS.glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if not isinstance(doc, dict) or doc.get("kind") != "Deployment":
                continue
            for c in doc["spec"]["template"]["spec"]["containers"]:
                mem = str(c.get("resources", {}).get("limits", {}).get("memory", ""))
                if mem[-2:] in units:
                    out[doc["metadata"]["name"]] = int(float(mem[:-2]) * units[mem[-2:]])
    return out


# ----------------------------------------------------------------------------- one run


@dataclass
class Shared:
    kafka: Any  # tests.privatestack.PrivateKafka
    proxy: Any  # tests.indexingutil.CuttableProxy
    tls: tuple[ssl.SSLContext, Path]
    workdir: Path
    start: datetime
    args: argparse.Namespace


async def run_once(sh: Shared, *, faults: tuple[str, ...]) -> dict[str, Any]:
    from kubepulse._cli_streams import create_topics
    from kubepulse._demo import DEMO_RULES, _lag
    from streams.indexing import INDEXED_TOPICS
    from streams.rules import default_rules_path
    from streams.topics import ALERTS, EVENTS, METRICS, QUOTAS
    from tests.fakes import FakePagerDuty, FakeSlack, Scripted

    args = sh.args
    run = uuid.uuid4().hex[:8]
    name = "faults" if faults else "baseline"
    if (sh.workdir / name).exists():
        name += f"-{run}"
    logdir = sh.workdir / name
    logdir.mkdir()
    settings = load_settings(
        kafka={"bootstrap_servers": sh.kafka.bootstrap, "topic_prefix": f"chaos{run}.", "consumer_group": f"kp-chaos-{run}",
               "topic_partitions": 4},
        elasticsearch={"url": sh.proxy.url, "index_prefix": f"kp-chaos-{run}"}, http_port=0)
    pd, slack = FakePagerDuty(), FakeSlack()
    await pd.start(ssl_context=sh.tls[0])
    await slack.start()
    alerting = logdir / "alerting.yaml"
    alerting.write_text(yaml.safe_dump({
        # One group per alert, sent at once: every transition is a page of its own, so pages can be
        # counted against transitions. Retries are the receivers' defaults (what a user gets).
        "route": {"receiver": "oncall", "group_by": ["..."], "group_wait": "1s", "group_interval": "2s",
                  "repeat_interval": "4h"},
        "receivers": [{"name": "oncall",
                       "pagerduty_configs": [{"routing_key": ROUTING_KEY, "url": pd.url, "ca_file": str(sh.tls[1])}],
                       "slack_configs": [{"api_url": slack.webhook_url}]}],
    }))
    await create_topics(settings)
    env0 = env_for(settings, 0, KUBEPULSE_ELASTICSEARCH__URL=settings.elasticsearch.url, PYTHONUNBUFFERED="1")
    # In a thread: this loop serves the Elasticsearch proxy the command talks through.
    setup = await asyncio.to_thread(subprocess.run, [str(KUBEPULSE), "es", "setup"], env=env0, capture_output=True,
                                    text=True, timeout=300)
    if setup.returncode != 0:
        raise SystemExit(f"kubepulse es setup failed:\n{setup.stdout}{setup.stderr}")
    rules = json.dumps([str(default_rules_path()), str(DEMO_RULES)])
    common = dict(KUBEPULSE_ELASTICSEARCH__URL=settings.elasticsearch.url, KUBEPULSE_STREAMS__RULES_FILES=rules,
                  KUBEPULSE_STREAMS__DISPATCH_ALERTS="false", KUBEPULSE_ALERTING__CONFIG_FILE=str(alerting),
                  # Checkpoints as often per simulated minute as at real time (as bench/fleet.py does).
                  KUBEPULSE_STREAMS__CHECKPOINT_INTERVAL_S=f"{60.0 / args.speed:g}", PYTHONUNBUFFERED="1")
    procs = {
        n: Proc(n, argv, env_for(settings, free_port(), **common), logdir)
        for n, argv in (("worker-1", [str(KUBEPULSE), "worker"]), ("worker-2", [str(KUBEPULSE), "worker"]),
                        ("indexer", [str(KUBEPULSE), "es", "index"]), ("dispatcher", [str(KUBEPULSE), "alerting", "run"]))
    }
    source_out = logdir / "source.json"
    procs["source"] = Proc("source", [sys.executable, str(Path(__file__).resolve()), "_source", "--out", str(source_out),
                                      "--clusters", str(args.clusters), "--nodes", str(args.nodes), "--pods", str(args.pods),
                                      "--seed", str(args.seed), "--speed", f"{args.speed:g}", "--steps", str(args.steps),
                                      "--start", sh.start.isoformat()],
                           env_for(settings, 0, PYTHONUNBUFFERED="1"), logdir, restart=False)
    for n in ("worker-1", "worker-2", "indexer", "dispatcher"):
        procs[n].start()
    await asyncio.sleep(15)  # joined their groups (the dispatcher reads its state topic first)
    applied: list[dict[str, Any]] = []
    scale = 0.5 if args.quick else 1.0

    async def inject(at: float, fault: str, t0: float) -> None:
        await asyncio.sleep(max(0.0, t0 + at * scale - time.monotonic()))
        t = round(time.monotonic() - t0, 1)
        if fault == "kill_worker":
            procs["worker-1"].kill()
        elif fault == "kill_dispatcher":
            procs["dispatcher"].kill()
        elif fault == "restart_broker":
            await asyncio.to_thread(sh.kafka.stop)
            await asyncio.to_thread(sh.kafka.start)
        elif fault == "cut_elasticsearch":
            await sh.proxy.cut()
            await asyncio.sleep(OUTAGE_S)
            await sh.proxy.restore()
        elif fault == "pagerduty_outage":
            pd.fail_for(OUTAGE_S, Scripted(500), Scripted(429, headers={"Retry-After": "5"}),
                        Scripted(202, delay=15.0))  # a hang past the notifier's 10 s timeout
        applied.append({"fault": fault, "at_s": t, "took_s": round(time.monotonic() - t0 - t, 1)})

    t0 = time.monotonic()
    procs["source"].start()
    injecting = [asyncio.create_task(inject(at, f, t0)) for at, f in FAULTS if f in faults]
    try:
        while not procs["source"].done or not all(t.done() for t in injecting):
            for p in procs.values():
                p.sample()
            for t in injecting:
                if t.done() and t.exception():
                    raise t.exception()  # type: ignore[misc]
            await asyncio.sleep(0.5)
        produce_s = time.monotonic() - t0
        prefix, group = settings.kafka.topic_prefix, settings.kafka.consumer_group
        lags = {
            "worker": (group, [t.named(prefix) for t in (METRICS, EVENTS, QUOTAS)]),
            "indexer": (f"{group}-indexing", [t.named(prefix) for t in INDEXED_TOPICS]),
            "dispatcher": (f"{group}.alerting", [ALERTS.named(prefix)]),
        }
        # Drained: no consumer lags and the PagerDuty fake got nothing new for 20 s (group timers, retries).
        deadline, quiet, last = time.monotonic() + args.drain_timeout, time.monotonic(), -1
        lag: dict[str, int] = {}
        while time.monotonic() < deadline:
            for p in procs.values():
                p.sample()
            lag = {k: await _lag(settings, g, ts) for k, (g, ts) in lags.items()}
            if len(pd.received) != last or any(lag.values()):
                if int(time.monotonic() - t0) % 10 == 0:
                    print(f"chaos {name}: draining, lag {lag}, {len(pd.received)} PagerDuty requests", file=sys.stderr)
                last, quiet = len(pd.received), time.monotonic()
            elif time.monotonic() - quiet >= 20:
                break
            await asyncio.sleep(1.0)
        drain_s = time.monotonic() - t0 - produce_s
    finally:
        for t in injecting:
            t.cancel()
        # In threads: the indexer's shutdown may still talk through the proxy this loop serves.
        await asyncio.gather(*(asyncio.to_thread(p.stop) for p in procs.values()))
        if sh.proxy._server is None:  # stopped in the middle of an outage
            await sh.proxy.restore()
    counted = await count_run(settings, source_out)
    out = {
        "run": name, "index_prefix": settings.elasticsearch.index_prefix, "produce_s": round(produce_s, 1), "drain_s": round(drain_s, 1),
        "lag_at_end": lag, "faults": applied, **counted,
        "pages": Counter(f"{e['dedup_key']} {e['event_action']}" for e in pd.events),
        "page_log": [(e["dedup_key"], e["event_action"]) for e in pd.events],
        "start": sh.start.isoformat(), "fleet": f"{args.clusters}x{args.nodes}x{args.pods}", "seed": args.seed,
        "steps": args.steps, "speed": args.speed,
        "pagerduty_requests": Counter(str(r.status) for r in pd.received),
        "slack_messages": len([r for r in slack.received if r.status == 200]),
        "fake_rejected": len(pd.rejected) + len(slack.rejected),
        "worker_input_skipped": _skipped(logdir),
        "restarts": {n: p.starts - 1 for n, p in procs.items() if n != "source"},
        "exit_codes": {n: p.exits for n, p in procs.items() if p.exits},
        "rss_peak_bytes": {n: p.rss_peak for n, p in procs.items()},
    }
    await pd.stop()
    await slack.stop()
    return out


async def count_run(settings: Settings, source_out: Path) -> dict[str, Any]:
    """What reached the topics and Elasticsearch: ids, not counts, so a double and a loss cannot cancel out."""
    from elasticsearch import AsyncElasticsearch

    from kubepulse._demo import _read_topic
    from models.codec import decode
    from models.records import AlertTransition, DeadLetter, EntityRollup, NodeScrape
    from streams.index import documents_for
    from streams.topics import ALERTS, DEADLETTER, METRICS, ROLLUPS

    prefix = settings.kafka.topic_prefix
    src = json.loads(source_out.read_text()) if source_out.exists() else {"confirmed": [], "lost": []}
    confirmed = {tuple(x) for x in src["confirmed"]}
    scrapes = [decode(NodeScrape, v) for v in await _read_topic(settings, METRICS.named(prefix))]
    on_topic = Counter((s.key, s.timestamp.isoformat()) for s in scrapes)
    expected_metric_ids: set[str] = set()
    for s in {(s.key, s.timestamp.isoformat()): s for s in scrapes}.values():
        expected_metric_ids.update(d.id for d in documents_for(s))
    rollup_values = await _read_topic(settings, ROLLUPS.named(prefix))
    rollups: dict[str, list[str]] = {}
    rollup_values_rounded: dict[str, set[str]] = {}
    expected_rollup_ids: dict[str, set[str]] = {}
    for v in rollup_values:
        r = decode(EntityRollup, v)
        key = f"{r.entity_id} {r.window} {r.window_start.isoformat()}"
        rollups.setdefault(key, []).append(hashlib.sha1(v).hexdigest())
        rollup_values_rounded.setdefault(key, set()).add(_rounded_hash(v))
        for d in documents_for(r, rollups=settings.elasticsearch.rollups):
            expected_rollup_ids.setdefault(d.kind, set()).add(d.id)
    # Copies of one rollup that differ (a replay that did not reproduce it), whole, to see how.
    by_hash = {hashlib.sha1(v).hexdigest(): v for v in rollup_values}
    differing = {k: [json.loads(by_hash[h]) for h in dict.fromkeys(hs)] for k, hs in rollups.items() if len(set(hs)) > 1}
    dead_letters = Counter(f"{d.stage}: {d.error_type or d.reason[:60]}"
                           for d in (decode(DeadLetter, v) for v in await _read_topic(settings, DEADLETTER.named(prefix))))
    transitions = Counter()
    for v in await _read_topic(settings, ALERTS.named(prefix)):
        t = decode(AlertTransition, v)
        transitions[f"{t.fingerprint} {t.sequence} {t.status}"] += 1
    es = AsyncElasticsearch(_direct_es(), request_timeout=300)
    try:
        await es.indices.refresh(index=f"{settings.elasticsearch.index_prefix}-*")
        metric_ids = await _ids(es, f"{settings.elasticsearch.index_prefix}-metrics-*")
        rollup_docs = {kind: await _ids(es, f"{settings.elasticsearch.index_prefix}-{kind}-*") for kind in expected_rollup_ids}
    finally:
        await es.close()
    metric_set = set(metric_ids)
    return {
        "scrapes_confirmed": len(confirmed),
        "scrapes_given_up_by_source": len([x for x in src["lost"] if x[0] == "metrics"]),
        "scrapes_on_topic": len(on_topic),
        "scrapes_on_topic_twice": sum(1 for n in on_topic.values() if n > 1),
        "scrapes_confirmed_missing_on_topic": len(confirmed - set(on_topic)),
        "metric_docs_expected": len(expected_metric_ids),
        "metric_docs": len(metric_ids),
        "metric_docs_missing": len(expected_metric_ids - metric_set),
        "metric_docs_unexpected": len(metric_set - expected_metric_ids),
        "metric_docs_id_twice": len(metric_ids) - len(metric_set),
        "rollups": rollups,
        "rollup_docs_expected": sum(len(v) for v in expected_rollup_ids.values()),
        "rollup_docs": sum(len(v) for v in rollup_docs.values()),
        "rollup_docs_missing": sum(len(ids - set(rollup_docs[k])) for k, ids in expected_rollup_ids.items()),
        "rollup_docs_unexpected": sum(len(set(rollup_docs[k]) - ids) for k, ids in expected_rollup_ids.items()),
        "rollup_docs_id_twice": sum(len(v) - len(set(v)) for v in rollup_docs.values()),
        "transitions": transitions,
        "dead_letters": dead_letters,
        "rollups_differing_copies": differing,
        "rollups_rounded": {k: sorted(v) for k, v in rollup_values_rounded.items()},
    }


def _direct_es() -> str:
    """The shared Elasticsearch itself (counting must not go through the proxy a fault may have cut)."""
    return load_settings().elasticsearch.url


async def _ids(es: Any, index: str) -> list[str]:
    """Every ``_id`` under ``index`` (a scroll)."""
    from elasticsearch.helpers import async_scan

    return [hit["_id"] async for hit in async_scan(es, index=index, query={"query": {"match_all": {}}}, _source=False,
                                                   size=5000, ignore_unavailable=True)]


# ----------------------------------------------------------------------------- comparing


def compare(base: dict[str, Any] | None, run: dict[str, Any], limits: dict[str, int]) -> dict[str, Any]:
    r_roll, r_tr, r_pages = run["rollups"], run["transitions"], run["pages"]
    out: dict[str, Any] = {
        "seed": None,
        "scrapes_produced": run["scrapes_confirmed"],
        "scrapes_given_up_by_source": run["scrapes_given_up_by_source"],
        "scrapes_on_topic": run["scrapes_on_topic"],
        "scrapes_lost": run["scrapes_confirmed_missing_on_topic"],
        "metric_docs_expected": run["metric_docs_expected"],
        "metric_docs_indexed": run["metric_docs"],
        "metric_docs_missing": run["metric_docs_missing"],
        "metric_docs_duplicated": run["metric_docs_unexpected"] + run["metric_docs_id_twice"],
        "rollups_on_topic": sum(len(v) for v in r_roll.values()),
        "rollups_distinct": len(r_roll),
        "rollups_written_twice": sum(1 for v in r_roll.values() if len(v) > 1),
        "rollups_twice_differing": sum(1 for v in r_roll.values() if len(set(v)) > 1),
        "rollup_docs_indexed": run["rollup_docs"],
        "rollup_docs_missing": run["rollup_docs_missing"],
        "rollup_docs_duplicated": run["rollup_docs_unexpected"] + run["rollup_docs_id_twice"],
        "transitions_published": len(r_tr),
        "transitions_duplicated": sum(n - 1 for n in r_tr.values()),
        "pages_delivered": sum(r_pages.values()),
        "pages_duplicated": _repeats(run["page_log"]),
        "pagerduty_requests": dict(run["pagerduty_requests"]),
        "slack_messages": run["slack_messages"],
        "fakes_rejected": run["fake_rejected"],
        "dead_letters": dict(run["dead_letters"]),
        "worker_input_skipped": run["worker_input_skipped"],
        "restarts": run["restarts"],
        "exit_codes": run["exit_codes"],
        "faults": run["faults"],
    }
    if base is not None:
        b_roll, b_tr, b_pages = base["rollups"], base["transitions"], base["pages"]
        out.update({
            "rollups_expected": len(b_roll),
            "rollups_missing": len(set(b_roll) - set(r_roll)),
            "rollups_unexpected": len(set(r_roll) - set(b_roll)),
            # Beyond the last bits: the cluster sums add node partials in arrival order, which a restart changes.
            "rollups_differing": sum(1 for k in set(b_roll) & set(r_roll)
                                     if set(base["rollups_rounded"][k]) != set(run["rollups_rounded"][k])),
            "rollups_differing_in_last_bits": sum(1 for k in set(b_roll) & set(r_roll) if set(b_roll[k]) != set(r_roll[k])),
            "transitions_expected": len(b_tr),
            "transitions_missing": len(set(b_tr) - set(r_tr)),
            "transitions_unexpected": len(set(r_tr) - set(b_tr)),
            "pages_expected": sum(b_pages.values()),
            "pages_missing": sum((b_pages - r_pages).values()),
            # Of those, alerts with neither trigger nor resolve: resolved before a first notification got through
            # (a resolved alert is sent only to who got it firing, as Alertmanager does).
            "pages_missing_alert_never_notified": sum(
                n for k, n in (b_pages - r_pages).items()
                if not any(p.startswith(k.split(" ")[0] + " ") for p in r_pages)),
            "pages_unexpected": sum((r_pages - b_pages).values()),
        })
    rss = run["rss_peak_bytes"]
    deploy = {"worker-1": "kubepulse-worker", "worker-2": "kubepulse-worker", "indexer": "kubepulse-indexer",
              "dispatcher": "kubepulse-worker", "source": "kubepulse-collector"}
    out["rss_peak_mb"] = {n: round(v / 2**20, 1) for n, v in rss.items()}
    out["rss_limit_mb"] = {n: round(limits[d] / 2**20) for n, d in deploy.items() if d in limits}
    over = [n for n, d in deploy.items() if d in limits and rss.get(n, 0) > limits[d]]
    lost = (out["scrapes_lost"] + out["scrapes_given_up_by_source"] + out["metric_docs_missing"] + out["rollup_docs_missing"]
            + out.get("rollups_missing", 0) + out.get("transitions_missing", 0) + out.get("pages_missing", 0))
    doubled = out["metric_docs_duplicated"] + out["rollup_docs_duplicated"] + out["pages_duplicated"] + out["transitions_duplicated"]
    out["lost_total"], out["duplicated_total"], out["rss_over_limit"] = lost, doubled, over
    out["budget_ok"] = (lost == 0 and doubled == 0 and not over and not out["fakes_rejected"]
                        and not out.get("rollups_differing") and not out["rollups_twice_differing"])
    return out


_GAP = re.compile(r"offsets (\d+)\.\.(\d+) of TopicPartition\(topic='[^']*?([a-z]+\.v\d)', partition=(\d+)\) never arrived")


def _skipped(logdir: Path) -> dict[str, int]:
    """Input records a worker's gap guard gave up on ("offsets A..B of P never arrived: going on"), per topic."""
    out: Counter[str] = Counter()
    for log in sorted(logdir.glob("worker-*.log")):
        for m in _GAP.finditer(log.read_text(errors="replace")):
            out[m.group(3)] += int(m.group(2)) - int(m.group(1)) + 1
    return dict(out)


def _rounded_hash(value: bytes) -> str:
    """A rollup's hash with its floats to 12 significant digits."""
    def walk(x: Any) -> Any:
        if isinstance(x, float):
            return float(f"{x:.12g}")
        if isinstance(x, dict):
            return {k: walk(v) for k, v in x.items()}
        if isinstance(x, list):
            return [walk(v) for v in x]
        return x

    return hashlib.sha1(json.dumps(walk(json.loads(value)), sort_keys=True).encode()).hexdigest()


def _repeats(log: list[tuple[str, str]]) -> int:
    """Events that repeat their dedup_key's previous action (a trigger while triggered, a resolve while resolved)."""
    last: dict[str, str] = {}
    n = 0
    for key, action in log:
        n += last.get(key) == action
        last[key] = action
    return n


# ----------------------------------------------------------------------------- main


async def main(args: argparse.Namespace) -> None:
    import trustme

    from tests.indexingutil import CuttableProxy
    from tests.privatestack import PrivateKafka

    if args.quick:
        args.duration = min(args.duration, 120.0)
    args.steps = int(args.duration * args.speed / INTERVAL_S)
    workdir = Path(tempfile.mkdtemp(prefix="kp-chaos-"))
    # The whole simulated range lies in the past (no clamping of scrapes stamped ahead of Kafka's clock),
    # starts on an hour (its 1-hour window closes like any other) and is the same for both runs.
    span = timedelta(seconds=args.steps * INTERVAL_S)
    start = (datetime.now(UTC) - 2 * span - timedelta(minutes=10)).replace(minute=0, second=0, microsecond=0)
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(workdir / "ca.pem"))
    es_host, _, es_port = _direct_es().split("://", 1)[1].rpartition(":")
    proxy = CuttableProxy(es_host, int(es_port.rstrip("/")))
    await proxy.start()
    kafka = PrivateKafka(workdir / "kafka")
    print(f"chaos: logs in {workdir}; private Kafka on {kafka.bootstrap}, Elasticsearch via {proxy.url}", file=sys.stderr)
    await asyncio.to_thread(kafka.start)
    base: dict[str, Any] | None = None
    if args.baseline:  # a fault-free run saved earlier, of the same fleet, seed and simulated start
        base = json.loads(Path(args.baseline).read_text())
        mine = {"fleet": f"{args.clusters}x{args.nodes}x{args.pods}", "seed": args.seed, "steps": args.steps, "speed": args.speed}
        if {k: base[k] for k in mine} != mine:
            raise SystemExit(f"--baseline {args.baseline} is of {({k: base[k] for k in mine})}, not {mine}")
        start = datetime.fromisoformat(base["start"])
        base.update(pages=Counter(base["pages"]), transitions=Counter(base["transitions"]))
    sh = Shared(kafka, proxy, (server_ctx, workdir / "ca.pem"), workdir, start, args)
    faults = tuple(f for f in args.faults.split(",") if f) if args.faults != "all" else tuple(f for _, f in FAULTS)
    if unknown := set(faults) - {f for _, f in FAULTS}:
        raise SystemExit(f"unknown faults {sorted(unknown)}; known: {', '.join(f for _, f in FAULTS)}")
    try:
        if base is None and not args.skip_baseline:
            base = await run_once(sh, faults=())
            (workdir / "baseline.json").write_text(json.dumps(base))
            print(json.dumps(compare(None, base, manifest_limits())), file=sys.stderr)
        faulted = await run_once(sh, faults=faults)
        (workdir / "faults.json").write_text(json.dumps(faulted))
    finally:
        await proxy.close()
        await asyncio.to_thread(kafka.purge)
    result = compare(base, faulted, manifest_limits())
    result.update(seed=args.seed, fleet=f"{args.clusters}x{args.nodes}x{args.pods}", speed=args.speed,
                  simulated_s=args.steps * INTERVAL_S, logs=str(workdir))
    if base is not None:
        result["baseline_rss_peak_mb"] = {n: round(v / 2**20, 1) for n, v in base["rss_peak_bytes"].items()}
    if args.keep_indices is False:
        await _delete_indices([faulted["index_prefix"]] + ([base["index_prefix"]] if base and not args.baseline else []))
    print(json.dumps(result))


async def _delete_indices(prefixes: list[str]) -> None:
    from elasticsearch import AsyncElasticsearch

    es = AsyncElasticsearch(_direct_es())
    try:
        for p in prefixes:
            await es.options(ignore_status=404).indices.delete(index=f"{p}-*")
    finally:
        await es.close()


def parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    if argv[:1] == ["_source"]:  # the source child
        ap.add_argument("_source")
        for a in ("--out", "--start"):
            ap.add_argument(a, required=True)
        for a in ("--clusters", "--nodes", "--pods", "--seed", "--steps"):
            ap.add_argument(a, type=int, required=True)
        ap.add_argument("--speed", type=float, required=True)
        return ap.parse_args(argv)
    ap.add_argument("--clusters", type=int, default=2)
    ap.add_argument("--nodes", type=int, default=3, help="nodes per cluster")
    ap.add_argument("--pods", type=int, default=10, help="pods per node")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--speed", type=float, default=15.0, help="simulated seconds per wall second")
    ap.add_argument("--duration", type=float, default=240.0, help="wall seconds the source publishes")
    ap.add_argument("--drain-timeout", type=float, default=240.0)
    ap.add_argument("--quick", action="store_true", help="120 s of input, fault times halved (outages stay 60 s)")
    ap.add_argument("--skip-baseline", action="store_true", help="no fault-free run: nothing to compare rollups with")
    ap.add_argument("--faults", default="all", help=f"comma-separated, of: {', '.join(f for _, f in FAULTS)} ('' for none)")
    ap.add_argument("--baseline", help="the baseline.json of an earlier run (same fleet, seed, duration) instead of a new one")
    ap.add_argument("--keep-indices", action="store_true")
    return ap.parse_args(argv)


if __name__ == "__main__":
    ns = parse(sys.argv[1:])
    asyncio.run(source_main(ns) if getattr(ns, "_source", None) else main(ns))
