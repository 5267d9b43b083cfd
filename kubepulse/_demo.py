"""``kubepulse demo``: runs the whole pipeline on this machine (a simulated fleet or real clusters) and shows it working.

It starts, as subprocesses with their logs in the run's directory:

* ``kubepulse simulate`` (or ``kubepulse collect`` when ``Settings.clusters``
  names real clusters), writing kubepulse.metrics.v1, events.v1, incidents.v1;
* ``kubepulse worker``: windows, anomaly scores, rules → rollups, anomalies, alerts;
* ``kubepulse es index``: every topic into Elasticsearch;
* ``kubepulse alerting run``: alerts → notifications (console/file receiver,
  plus PagerDuty/Slack when Settings.alerting has their secrets).

Then either shows ``kubepulse top`` live until Ctrl-C, or (``duration``)
runs unattended, drains the pipeline, and counts what each stage produced
from the real sources: Kafka topics, Elasticsearch aliases, the
notifications file and the simulator's labels file.

Isolation between runs. Kafka topics and consumer groups are always the
run's own (prefix ``demo.<run>.``, group ``kpdemo-<run>``), deleted at the
end: the worker's state is event-time driven, and a fresh group and fresh
topics make every run start from a clean state. Elasticsearch is different
for the two modes:

* live (``make demo``): the configured index prefix (``kubepulse``), so the
  Kibana dashboards see the data. The simulated clock of each run starts
  after the newest sample already there, so runs never overlap in time, and
  ``top`` and the summary read only this run's time range.
* unattended (``DEMO_DURATION``): a per-run prefix ``kpdemo-<run>``, so the
  summary counts exactly this run (and CI runs in parallel never mix); its
  indices and templates are deleted at the end unless ``keep``.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

import yaml

from models.settings import Settings

__all__ = [
    "DEMO_INJECT",
    "LIVE_HORIZON_S",
    "clock_skew_s",
    "DemoPlan",
    "DemoError",
    "Children",
    "plan_demo",
    "prepare",
    "drain",
    "summarize",
    "cleanup",
    "format_summary",
    "SUMMARY_KEYS",
]

DEMO_RULES = Path(__file__).with_name("demo_rules.yaml")

DEMO_INJECT: tuple[str, ...] = ("node_memory_pressure@60:120", "network_storm@465:120")
"""Incidents at fixed simulated offsets, on top of the regular schedule, so the first minute of wall time always shows
one: node memory pressure right away (threshold alerts need no detector warm-up; it fires after the demo rule's 1m
and resolves when the incident ends, at 180 s) and a network storm just after the detectors' 30-sample warm-up
(450 s at a 15 s interval), so it is also scored as an anomaly. At 15x that is 12 s and 31 s of wall time."""

SUMMARY_KEYS = (
    "samples", "documents", "anomalies", "alerts_fired", "alerts_resolved",
    "incidents_injected", "incidents_detected", "notifications", "dead_letters",
)

DOCUMENT_KINDS = ("metrics", "events", "quotas", "rollups", "anomalies", "alerts", "notifications", "incidents", "deadletter")
_WALL_TIME_KINDS = ("notifications", "deadletter")
"""Kinds stamped with the wall clock (when a notification was sent, when a record failed); the others carry data time."""


LIVE_HORIZON_S = 7 * 86400.0
"""Wall seconds a live (until Ctrl-C) demo is assumed to run at most, for the clock lead its worker allows."""


def clock_skew_s(base: Settings, *, speed: float, duration_s: float | None, real_clusters: bool) -> float:
    """``streams.max_clock_skew_s`` for a demo's worker: the user's, plus how far the simulated clock runs ahead.

    An accelerated simulation stamps its scrapes ``(speed - 1)`` x the wall time it has run ahead of the wall
    clock (14 minutes per minute at 15x). The worker bounds a scrape's time by Kafka's receive time plus
    ``max_clock_skew_s`` (a node whose clock runs fast), so with the default 2 minutes nearly every scrape
    of a demo was processed at "now + 2 min": its anomalies and alerts carried wall-clock times, matched no
    incident of the labels file (simulated time), and the summary counted 1 incident of 9 found.

    >>> from models.settings import Settings
    >>> clock_skew_s(Settings(), speed=15.0, duration_s=300.0, real_clusters=False)
    4320.0
    >>> clock_skew_s(Settings(), speed=15.0, duration_s=300.0, real_clusters=True)  # real clocks: the user's bound
    120.0
    """
    skew = base.streams.max_clock_skew_s
    if real_clusters or speed <= 1.0:
        return skew
    return skew + (speed - 1.0) * (duration_s if duration_s is not None else LIVE_HORIZON_S)


class DemoError(RuntimeError):
    """The demo cannot start or a part of it died; the message says what to do."""


@dataclass(slots=True)
class DemoPlan:
    """One demo run: where its data goes, how the fleet is simulated, what it starts."""

    run_id: str
    unattended: bool
    duration_s: float | None
    speed: float
    interval_s: float
    incident_every_s: float
    diurnal_period_s: float
    inject: tuple[str, ...]
    clusters: int
    nodes: int
    pods: int
    workdir: Path
    real_clusters: bool
    keep: bool
    settings: Settings
    """The settings every part of this run uses (prefixes, group, files, rules)."""
    wall_start: datetime = field(default_factory=lambda: datetime.now(UTC))
    sim_start: datetime | None = None
    """When the data starts (set by :func:`prepare`): simulated time, or the wall clock for real clusters."""
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def labels_file(self) -> Path:
        return self.workdir / "incidents.jsonl"

    @property
    def notifications_file(self) -> Path:
        return self.workdir / "notifications.jsonl"

    @property
    def since(self) -> datetime:
        return self.sim_start or self.wall_start

    def since_for(self, kind: str) -> datetime:
        """The first instant of this run in documents of ``kind`` (wall-clock kinds start at the wall start)."""
        return self.wall_start if kind in _WALL_TIME_KINDS else self.since


def plan_demo(
    base: Settings,
    *,
    duration_s: float | None,
    workdir: Path | None = None,
    run_id: str | None = None,
    speed: float = 15.0,
    interval_s: float = 15.0,
    incident_every_s: float = 600.0,
    diurnal_period_s: float = 3600.0,
    inject: Sequence[str] = DEMO_INJECT,
    clusters: int = 3,
    nodes: int = 8,
    pods: int = 10,
    keep: bool = False,
) -> DemoPlan:
    """Decide this run's prefixes, files and schedule from the user's settings (see the module docstring)."""
    import tempfile

    run_id = run_id or uuid.uuid4().hex[:8]
    unattended = duration_s is not None
    workdir = (workdir or Path(tempfile.gettempdir()) / f"kubepulse-demo-{run_id}").resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    group = f"kpdemo-{run_id}"
    index_prefix = group if unattended else base.elasticsearch.index_prefix
    rules = list(base.streams.rules_files)
    if not rules and base.streams.use_default_rules:
        from streams.rules import default_rules_path

        rules = [default_rules_path()]
    rules.append(DEMO_RULES)
    skew = clock_skew_s(base, speed=speed, duration_s=duration_s, real_clusters=bool(base.clusters))
    env = {
        "KUBEPULSE_KAFKA__TOPIC_PREFIX": f"demo.{run_id}.",
        "KUBEPULSE_KAFKA__CONSUMER_GROUP": group,
        "KUBEPULSE_ELASTICSEARCH__INDEX_PREFIX": index_prefix,
        "KUBEPULSE_ALERTING__NOTIFICATIONS_FILE": str(workdir / "notifications.jsonl"),
        "KUBEPULSE_STREAMS__RULES_FILES": json.dumps([str(p) for p in rules]),
        "KUBEPULSE_SIMULATOR__LABELS_FILE": str(workdir / "incidents.jsonl"),
        # Every long-running command serves /healthz on http_port: 0 (off) so four of them and
        # whatever else runs on this machine never fight over a port.
        "KUBEPULSE_HTTP_PORT": "0",
        # The dispatcher runs as its own process here (its lag is part of the drain), so the
        # worker does not run a second, standby one.
        "KUBEPULSE_STREAMS__DISPATCH_ALERTS": "false",
        # The simulated clock runs ahead of the wall clock: the worker must not restamp it (clock_skew_s).
        "KUBEPULSE_STREAMS__MAX_CLOCK_SKEW_S": repr(skew),
    }
    alerting_file = _alerting_config(base, workdir)
    if alerting_file is not None:
        env["KUBEPULSE_ALERTING__CONFIG_FILE"] = str(alerting_file)
    settings = base.model_copy(
        update={
            "kafka": base.kafka.model_copy(update={"topic_prefix": env["KUBEPULSE_KAFKA__TOPIC_PREFIX"], "consumer_group": group}),
            "elasticsearch": base.elasticsearch.model_copy(update={"index_prefix": index_prefix}),
            "alerting": base.alerting.model_copy(
                update={"notifications_file": workdir / "notifications.jsonl", "config_file": alerting_file or base.alerting.config_file}
            ),
            "streams": base.streams.model_copy(update={"rules_files": rules, "max_clock_skew_s": skew}),
            "http_port": 0,
        }
    )
    return DemoPlan(
        run_id=run_id,
        unattended=unattended,
        duration_s=duration_s,
        speed=speed,
        interval_s=interval_s,
        incident_every_s=incident_every_s,
        diurnal_period_s=diurnal_period_s,
        inject=tuple(inject),
        clusters=clusters,
        nodes=nodes,
        pods=pods,
        workdir=workdir,
        real_clusters=bool(base.clusters),
        keep=keep,
        settings=settings,
        env_overrides=env,
    )


def _alerting_config(base: Settings, workdir: Path) -> Path | None:
    """With no alerting config file but PagerDuty/Slack secrets in the settings, a config sending to them *and* the console.

    The dispatcher's default (no file) is the console receiver only; a user who
    exported ``KUBEPULSE_ALERTING__PAGERDUTY_ROUTING_KEY`` expects the demo's
    pages to reach PagerDuty. The secrets stay in the environment: the file
    only says which integrations to use.
    """
    a = base.alerting
    if a.config_file is not None:
        return None
    receiver: dict[str, Any] = {"name": "demo", "console_configs": [{}]}
    if a.pagerduty_routing_key is not None:
        receiver["pagerduty_configs"] = [{}]
    if a.slack_webhook_url is not None or (a.slack_token is not None and a.slack_channel):
        receiver["slack_configs"] = [{}]
    if len(receiver) == 2:
        return None
    from streams.alerting.config import default_config

    route = default_config().route.model_dump(mode="json", by_alias=True, exclude_none=True)
    route["receiver"] = "demo"
    path = workdir / "alerting.yaml"
    path.write_text(yaml.safe_dump({"route": route, "receivers": [receiver]}, sort_keys=False))
    return path


# ----------------------------------------------------------------------------- preparing the servers


async def prepare(plan: DemoPlan) -> list[str]:
    """Check the servers, create the run's topics, install the index templates, choose the data start; returns what was done."""
    from elastic_transport import TransportError

    from kubepulse._cli_streams import create_topics
    from streams.index import async_client, install_templates

    s = plan.settings
    done: list[str] = []
    try:
        created = await asyncio.wait_for(create_topics(s), timeout=60)
    except Exception as exc:  # noqa: BLE001 - any failure here means "Kafka is not there"
        raise DemoError(f"Kafka is not reachable at {s.kafka.bootstrap_servers} ({exc!r}): run `deploy/local/stack up` (make demo does)") from exc
    done.append(f"topics: {len(created)} created under prefix {s.kafka.topic_prefix!r}")
    client = async_client(s)
    try:
        try:
            templates = await install_templates(client, s)
        except TransportError as exc:
            raise DemoError(f"Elasticsearch is not reachable at {s.elasticsearch.url} ({exc}): run `deploy/local/stack up` (make demo does)") from exc
        done.append(f"elasticsearch: {len(templates)} templates for {s.elasticsearch.index_prefix}-*")
        start = datetime.now(UTC).replace(microsecond=0)
        if not plan.real_clusters and not plan.unattended:
            # A shared index prefix may hold an earlier run's accelerated (future) samples: start after them,
            # so this run's time range is its own and top/summary can select it.
            resp = await client.options(ignore_status=404).search(
                index=f"{s.elasticsearch.index_prefix}-metrics", size=0, aggs={"t": {"max": {"field": "@timestamp"}}}
            )
            t_ms = (resp.get("aggregations") or {}).get("t", {}).get("value")
            if t_ms is not None:
                last = datetime.fromtimestamp(t_ms / 1000, UTC)
                if last >= start:
                    start = (last + timedelta(seconds=plan.interval_s)).replace(microsecond=0)
                    done.append(f"data starts at {start:%H:%M:%S}Z, after the previous run's last sample")
        plan.sim_start = start
    finally:
        await client.close()
    return done


# ----------------------------------------------------------------------------- the subprocesses


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: SIGTERM this child when the demo dies (even by SIGKILL), so nothing outlives it."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


@dataclass(slots=True)
class Child:
    name: str
    argv: list[str]
    proc: subprocess.Popen[bytes]
    log_path: Path
    log: IO[bytes]

    def tail(self, n: int = 30) -> str:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return "\n".join(lines[-n:])


class Children:
    """The demo's subprocesses, each in its own process group (Ctrl-C reaches only the demo, which stops them in order)."""

    def __init__(self, plan: DemoPlan, *, environ: dict[str, str]) -> None:
        self.plan = plan
        env = {k: v for k, v in environ.items() if k not in plan.env_overrides}
        env.update(plan.env_overrides)
        env.setdefault("PYTHONUNBUFFERED", "1")
        self.env = env
        self.children: dict[str, Child] = {}

    def start(self, name: str, args: list[str]) -> Child:
        argv = [sys.executable, "-m", "kubepulse.cli", *args]
        log_path = self.plan.workdir / f"{name}.log"
        log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(
            argv, env=self.env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            process_group=0, preexec_fn=_die_with_parent if sys.platform == "linux" else None,
        )
        child = Child(name, argv, proc, log_path, log)
        self.children[name] = child
        return child

    def commands(self) -> list[tuple[str, list[str]]]:
        """(name, kubepulse arguments) of each process the demo starts, in start order."""
        p = self.plan
        out = [("worker", ["worker"]), ("indexer", ["es", "index"]), ("alerting", ["alerting", "run"])]
        if p.real_clusters:
            out.append(("collector", ["collect"]))
            return out
        args = [
            "simulate", "--clusters", str(p.clusters), "--nodes", str(p.nodes), "--pods", str(p.pods),
            "--interval", f"{p.interval_s:g}", "--speed", f"{p.speed:g}", "--incident-every", f"{p.incident_every_s:g}",
            "--diurnal-period", f"{p.diurnal_period_s:g}", "--labels-file", str(p.labels_file),
        ]
        if p.sim_start is not None:
            args += ["--start", p.sim_start.strftime("%Y-%m-%dT%H:%M:%S")]
        for plan in p.inject:
            args += ["--inject", plan]
        out.append(("simulator", args))
        return out

    def start_all(self) -> None:
        for name, args in self.commands():
            self.start(name, args)

    @property
    def source(self) -> str:
        return "collector" if "collector" in self.children else "simulator"

    def failed(self) -> Child | None:
        """A child that exited on its own (none of them should before the demo stops them)."""
        for c in self.children.values():
            if c.proc.poll() is not None:
                return c
        return None

    def stop(self, names: Sequence[str] | None = None, *, timeout: float = 20.0) -> dict[str, int | None]:
        """SIGTERM (each command's graceful stop), then SIGKILL after ``timeout``; returns exit codes."""
        chosen = [self.children[n] for n in (names or list(self.children)) if n in self.children]
        for c in chosen:
            if c.proc.poll() is None:
                c.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int | None] = {}
        for c in chosen:
            try:
                c.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                c.proc.kill()
                c.proc.wait(timeout=10)
            c.log.close()
            codes[c.name] = c.proc.returncode
            del self.children[c.name]
        return codes


# ----------------------------------------------------------------------------- draining and counting


async def _lag(settings: Settings, group: str, topics: Sequence[str]) -> int:
    """Messages of ``topics`` not yet committed by ``group`` (a group that never committed lags by everything)."""
    from aiokafka import AIOKafkaConsumer
    from aiokafka.admin import AIOKafkaAdminClient

    from models.kafka import topic_partitions

    admin = AIOKafkaAdminClient(**settings.kafka.aiokafka_kwargs())
    consumer = AIOKafkaConsumer(**settings.kafka.aiokafka_kwargs(), group_id=None, enable_auto_commit=False)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group)
        tps = [tp for t in topics for tp in await topic_partitions(consumer, t, timeout=0.1)]
        ends = await consumer.end_offsets(tps) if tps else {}
        lag = 0
        for tp, end in ends.items():
            meta = committed.get(tp)
            lag += end - (meta.offset if meta is not None and meta.offset >= 0 else 0)
        return lag
    finally:
        await consumer.stop()
        await admin.close()


async def pipeline_lag(plan: DemoPlan) -> dict[str, int]:
    """Per consumer (worker, indexer, dispatcher): how many messages wait."""
    from streams.indexing import INDEXED_TOPICS
    from streams.topics import ALERTS, EVENTS, METRICS

    s = plan.settings
    prefix, group = s.kafka.topic_prefix, s.kafka.consumer_group
    return {
        "worker": await _lag(s, group, [METRICS.named(prefix), EVENTS.named(prefix)]),
        "indexer": await _lag(s, f"{group}-indexing", [t.named(prefix) for t in INDEXED_TOPICS]),
        "alerting": await _lag(s, f"{group}.alerting", [ALERTS.named(prefix)]),
    }


async def drain(plan: DemoPlan, *, timeout: float = 60.0, settle_s: float = 4.0, alive: Callable[[], None] | None = None) -> dict[str, int]:
    """Wait until every consumer has caught up and Elasticsearch's counts hold still for ``settle_s``; returns the last lags.

    Committed offsets trail processing by a commit interval, and the dispatcher
    sends a resolved notification a group interval after it learns of it, so
    caught up means: no lag, and nothing new indexed for a few seconds.
    """
    deadline = time.monotonic() + timeout
    last_counts: dict[str, int] | None = None
    still_since = time.monotonic()
    lags: dict[str, int] = {}
    while time.monotonic() < deadline:
        if alive is not None:
            alive()
        lags = await pipeline_lag(plan)
        counts = await es_counts(plan)
        if counts != last_counts:
            last_counts, still_since = counts, time.monotonic()
        elif not any(lags.values()) and time.monotonic() - still_since >= settle_s:
            return lags
        await asyncio.sleep(1.0)
    return lags


async def es_counts(plan: DemoPlan) -> dict[str, int]:
    """Documents per kind in this run's time range (refreshed first, so just-indexed documents count)."""
    from streams.index import async_client

    s = plan.settings
    client = async_client(s)
    prefix = s.elasticsearch.index_prefix
    out: dict[str, int] = {}
    try:
        es = client.options(ignore_status=404)
        await es.indices.refresh(index=f"{prefix}-*")
        for kind in DOCUMENT_KINDS:
            resp = await es.count(
                index=f"{prefix}-{kind}", query={"range": {"@timestamp": {"gte": plan.since_for(kind).isoformat()}}}
            )
            out[kind] = int(resp.get("count", 0))
    finally:
        await client.close()
    return out


async def _read_topic(settings: Settings, topic: str) -> list[bytes]:
    """Every value on ``topic`` (from the beginning to the end offsets read at the start); none for a missing topic."""
    from models.kafka import read_to_end

    return [value for _, value in await read_to_end(settings, topic, timeout=0.1, missing_ok=True) if value is not None]


def _count_samples(values: Sequence[bytes]) -> int:
    """Samples as the worker counts them: every non-null metric of every entity of every scrape."""
    from models.codec import decode
    from models.records import NodeScrape
    from models.series import entities

    n = 0
    for v in values:
        for ent in entities(decode(NodeScrape, v)):
            n += sum(1 for _, x in ent.metrics if x is not None)
    return n


async def summarize(plan: DemoPlan) -> dict[str, Any]:
    """The run's numbers, each counted from where it really is (see :data:`SUMMARY_KEYS`)."""
    from collectors.simulator.labels import Detection, read_labels, score
    from models.codec import decode
    from models.records import AlertTransition, Anomaly
    from streams.topics import ALERTS, ANOMALIES, DEADLETTER, METRICS

    s = plan.settings
    prefix = s.kafka.topic_prefix
    metrics = await _read_topic(s, METRICS.named(prefix))
    anomaly_values = await _read_topic(s, ANOMALIES.named(prefix))
    alert_values = await _read_topic(s, ALERTS.named(prefix))
    dead = await _read_topic(s, DEADLETTER.named(prefix))
    samples = await asyncio.to_thread(_count_samples, metrics)
    anomalies = [decode(Anomaly, v) for v in anomaly_values]
    alerts = [decode(AlertTransition, v) for v in alert_values]
    incidents = read_labels(plan.labels_file) if plan.labels_file.exists() else []
    detections = [Detection.from_anomaly(a) for a in anomalies]
    detections += [d for d in (Detection.from_alert(t) for t in alerts) if d is not None]
    scored = score(incidents, detections, interval_s=plan.interval_s)
    notifications = 0
    if plan.notifications_file.exists():
        notifications = sum(1 for line in plan.notifications_file.read_bytes().splitlines() if line.strip())
    documents = await es_counts(plan)
    return {
        "samples": samples,
        "documents": documents,
        "anomalies": len(anomalies),
        "alerts_fired": sum(1 for t in alerts if t.status == "firing"),
        "alerts_resolved": sum(1 for t in alerts if t.status == "resolved"),
        "incidents_injected": len(incidents),
        "incidents_detected": scored.detected,
        "notifications": notifications,
        "dead_letters": len(dead),
        "_scrapes": len(metrics),
        "_per_kind": scored.per_kind,
        "_alerts": sorted({t.labels.get("alertname", t.rule) for t in alerts}),
    }


def problems(summary: dict[str, Any]) -> list[str]:
    """Stages that processed nothing: the demo exits non-zero when there is any."""
    out = []
    if not summary["samples"]:
        out.append(f"the {'collector' if not summary['incidents_injected'] else 'simulator'} published no samples")
    docs = summary["documents"]
    if not docs.get("rollups"):
        out.append("the worker produced no rollups (see worker.log)")
    if not docs.get("metrics"):
        out.append("nothing was indexed into Elasticsearch (see indexer.log)")
    return out


def format_summary(plan: DemoPlan, summary: dict[str, Any]) -> str:
    """A readable summary whose last line is the JSON object of :data:`SUMMARY_KEYS`."""
    docs = summary["documents"]
    lines = [
        "",
        f"kubepulse demo {plan.run_id}: summary",
        f"  samples published        {summary['samples']:>10,}  ({summary['_scrapes']:,} node scrapes)",
        "  documents in Elasticsearch " + ", ".join(f"{k} {v:,}" for k, v in docs.items()),
        f"  anomalies                {summary['anomalies']:>10,}",
        f"  alerts fired / resolved  {summary['alerts_fired']:>6,} / {summary['alerts_resolved']:,}  ({', '.join(summary['_alerts']) or 'none'})",
        f"  incidents detected       {summary['incidents_detected']:>6,} / {summary['incidents_injected']:,} injected"
        + ("  (" + ", ".join(f"{k} {d}/{n}" for k, (d, n) in summary["_per_kind"].items()) + ")" if summary["_per_kind"] else ""),
        f"  notifications            {summary['notifications']:>10,}  ({plan.notifications_file})",
        f"  dead letters             {summary['dead_letters']:>10,}",
        f"  logs                     {plan.workdir}",
        json.dumps({k: summary[k] for k in SUMMARY_KEYS}),
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- clean-up


async def cleanup(plan: DemoPlan, *, indices: bool) -> list[str]:
    """Delete the run's topics (and the workers' internal ones), and with ``indices`` its indices and templates."""
    from aiokafka.admin import AIOKafkaAdminClient

    from streams.index import INDEX_KINDS, async_client

    s = plan.settings
    done = []
    admin = AIOKafkaAdminClient(**s.kafka.aiokafka_kwargs())
    await admin.start()
    try:
        mine = [t for t in await admin.list_topics() if t.startswith((s.kafka.topic_prefix, s.kafka.consumer_group))]
        if mine:
            await admin.delete_topics(mine)
        done.append(f"deleted {len(mine)} topics")
    finally:
        await admin.close()
    if indices:
        prefix = s.elasticsearch.index_prefix
        client = async_client(s)
        try:
            es = client.options(ignore_status=404)
            resp = await es.indices.get(index=f"{prefix}-*", expand_wildcards="all", allow_no_indices=True, ignore_unavailable=True)
            names = list(resp.body) if hasattr(resp, "body") else list(resp)
            for i in range(0, len(names), 50):  # by name: wildcard deletes may be forbidden (action.destructive_requires_name)
                await es.indices.delete(index=",".join(names[i : i + 50]))
            for kind in INDEX_KINDS:
                await es.indices.delete_index_template(name=f"{prefix}-{kind}")
            await es.cluster.delete_component_template(name=f"{prefix}-settings")
            done.append(f"deleted {len(names)} indices {prefix}-*")
        finally:
            await client.close()
    return done


def status_line(plan: DemoPlan, elapsed: float, counts: dict[str, int]) -> str:
    """One progress line of an unattended run."""
    incidents = 0
    if plan.labels_file.exists():
        incidents = sum(1 for line in plan.labels_file.read_bytes().splitlines() if line.strip())
    shown = ", ".join(f"{k} {counts.get(k, 0):,}" for k in ("metrics", "rollups", "anomalies", "alerts", "notifications"))
    return f"  t+{elapsed:4.0f}s  incidents injected {incidents}; indexed: {shown}"
