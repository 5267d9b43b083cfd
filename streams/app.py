"""The stream worker: reads kubepulse.metrics.v1, events.v1 and quotas.v1, writes rollups.v2, anomalies, alerts, dead letters.

``create_app(settings)`` builds everything from one Settings object (no
module-level app, nothing read from the environment), so tests run isolated
apps side by side under their own topic prefix and consumer group. It is a
list of stages; each stage module registers its agent and its table:

=======================  ==============================================  ===================================
stage                    reads → writes                                  state
=======================  ==============================================  ===================================
``streams.scrapes``      metrics.v1 → rollups.v2, anomalies.v1,          ``node_to_state`` (a node: windows,
                         alerts.v1, the cluster partials                 detectors, rules; an entry per pod)
``streams.keyed_rules``  events.v1 → alerts.v1 (OOMKilled, Evicted...)   ``event_key_to_rules``
``streams.keyed_rules``  quotas.v1 → alerts.v1 (KubeQuotaAlmostFull...)  ``quota_key_to_rules``
``streams.aggregates``   aggregates-repartition.v1 → rollups.v2          ``cluster_to_aggregates``
                         (workload, namespace and cluster sums)
``streams.alerting``     alerts.v1 → receivers (routes, grouping)        its own compacted topic
=======================  ==============================================  ===================================

What they share is the runtime (``streams._runtime``: the Faust app, the
confirmed-write outbox, published-alert dedup, the offset guard) and the
checkpointer (``streams._state``: an input message is acked only once the
state that includes it, and its outputs, are confirmed on the broker).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

import faust

from models.series import quota_entities
from models.settings import Settings
from streams._runtime import Runtime
from streams._state import Checkpointer
from streams.keyed_rules import register_keyed_rules
from streams.pipeline import Pipeline
from streams.scrapes import register_scrapes
from streams.topics import ALERTS, ANOMALIES, DEADLETTER, EVENTS, QUOTAS, ROLLUPS

__all__ = ["create_app", "make_rule_engine"]

log = logging.getLogger(__name__)


def make_rule_engine(settings: Settings) -> Any:
    """The rule engine of ``streams.rules`` for these settings (one per stage: each keeps its own states)."""
    from streams.rules import RuleEngine

    return RuleEngine.from_settings(settings)


def _time_collections() -> None:
    """Time every garbage collection on /metrics (``kubepulse_stream_gc_pause_seconds``): a full one holds the loop."""
    import time

    from streams import _metrics as M

    started: dict[int, float] = {}

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        gen = info["generation"]
        if phase == "start":
            started[gen] = time.perf_counter()
        elif gen in started:
            M.GC_PAUSE_SECONDS.labels(str(gen)).observe(time.perf_counter() - started.pop(gen))

    if not any(getattr(cb, "__name__", "") == "on_gc" and cb.__module__ == __name__ for cb in gc.callbacks):
        gc.callbacks.append(on_gc)


def create_app(settings: Settings, *, engine: Any = None, pipeline: Pipeline | None = None) -> faust.App:
    """The worker's Faust app: every stage registered on one runtime."""
    s = settings.streams
    # The worker holds ~10^5-10^6 small long-lived objects (detectors, rule series): with CPython's default
    # thresholds a full collection runs every few scrapes and its cost grows with the state, so per-sample
    # CPU grew with node size. Young collections stay frequent; the old generation is scanned rarely.
    gc.set_threshold(50_000, 50, 100)
    _time_collections()
    rt = Runtime(settings)
    for spec in (ROLLUPS, ANOMALIES, ALERTS, DEADLETTER):
        rt.topic(spec)  # outputs: declared (created if missing) and named in rt.names
    cp = Checkpointer(rt, interval_s=s.checkpoint_interval_s)
    pipe = pipeline or Pipeline(settings, engine=engine or make_rule_engine(settings))
    forward = None
    if s.cluster_aggregates:
        from streams.aggregates import Aggregates

        forward = Aggregates(rt, cp).forward
    register_scrapes(rt, cp, pipe, forward=forward)
    events_engine = make_rule_engine(settings)
    register_keyed_rules(rt, cp, spec=EVENTS, name="process_events", table="event_key_to_rules",
                         engine=events_engine, observe=lambda ev, st: events_engine.observe_event(ev, state=st))
    quota_engine = make_rule_engine(settings)
    register_keyed_rules(
        rt, cp, spec=QUOTAS, name="process_quotas", table="quota_key_to_rules", engine=quota_engine,
        observe=lambda q, st: [t for e in quota_entities(q) for t in quota_engine.observe_entity(e, q.timestamp, state=st)])
    if s.dispatch_alerts:
        # Alerts are routed, grouped and sent by the process that raises them (the dispatcher's own consumer
        # group elects one worker). The config is loaded here, so a bad alerting file stops the worker at start.
        from streams.alerting import load_config, register_dispatcher

        register_dispatcher(rt.app, settings, config=load_config(settings))

    @rt.app.on_before_shutdown.connect
    async def _stop_outbox(sender: Any, **kw: Any) -> None:
        await rt.outbox.stop()

    rt.app.kubepulse_runtime = rt  # type: ignore[attr-defined]  # read by `kubepulse worker` for /readyz
    return rt.app
