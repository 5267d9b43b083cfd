"""The collector process: scrapes every configured cluster concurrently, publishes to metrics.v1, events.v1, quotas.v1 and autoscalers.v1.

Writes ``kubepulse.metrics.v1`` (one NodeScrape per node per pass, key
``cluster/node``), ``kubepulse.quotas.v1`` (one QuotaScrape per
ResourceQuota per pass, key ``cluster/namespace/name``),
``kubepulse.autoscalers.v1`` (one AutoscalerScrape per HorizontalPodAutoscaler
per pass, same key) and
``kubepulse.events.v1`` (one KubeEvent per new event or count, key
``cluster/namespace/object``) with one idempotent, compressed ``acks=all``
producer (``collectors/_publish.py``): a record Kafka does not confirm is sent
again with backoff while the pass waits, and is only given up (counted lost,
the pass failed) after ``kubernetes.publish_timeout_s``.
Each cluster runs its own loop: a jittered interval when healthy,
exponential backoff (capped at ``kubernetes.retry_max_s``) when a pass
fails, and its failures are reported without slowing the others; an
unexpected error fails that cluster's pass, never the other clusters.
"""

from __future__ import annotations

import asyncio
import logging
import random
import threading
from collections.abc import Callable
from typing import Any

from collectors._cluster import ClusterScraper, PassReport
from collectors._events import EventWatcher
from collectors._metrics import SCRAPE_ERRORS
from collectors._publish import Publisher
from collectors.errors import ClusterConfigError, CollectorError
from models.codec import encode
from models.kafka import create_topics
from models.records import KubeEvent
from models.settings import ClusterSettings, Settings
from streams.topics import AUTOSCALERS, EVENTS, METRICS, QUOTAS

log = logging.getLogger("kubepulse.collectors")

__all__ = ["Collector", "PassReport"]


class Collector:
    """Scrapes ``settings.clusters`` and publishes their records; use ``async with``.

    >>> Collector  # doctest: +ELLIPSIS
    <class 'collectors.collector.Collector'>
    """

    def __init__(
        self,
        settings: Settings,
        *,
        clusters: list[ClusterSettings] | None = None,
        events: bool = True,
        create_topics: bool = True,
        watch_timeout_s: int = 300,
        on_pass: Callable[[PassReport], None] | None = None,
    ) -> None:
        self.settings = settings
        self.clusters = list(clusters if clusters is not None else settings.clusters)
        if not self.clusters:
            raise CollectorError("no clusters configured: set `clusters:` in the config file or KUBEPULSE_CLUSTERS")
        self.events = events
        self.create_topics = create_topics
        self.watch_timeout_s = watch_timeout_s
        self.on_pass = on_pass
        self.metrics_topic = METRICS.named(settings.kafka.topic_prefix)
        self.events_topic = EVENTS.named(settings.kafka.topic_prefix)
        self.quotas_topic = QUOTAS.named(settings.kafka.topic_prefix)
        self.autoscalers_topic = AUTOSCALERS.named(settings.kafka.topic_prefix)
        self.scrapers: dict[str, ClusterScraper] = {}
        self.config_errors: dict[str, str] = {}
        self.watchers: dict[str, EventWatcher] = {}
        self._publisher: Publisher | None = None
        self._threads: list[threading.Thread] = []
        self._thread_stop = threading.Event()

    # -- lifecycle -----------------------------------------------------------

    async def __aenter__(self) -> Collector:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        for c in self.clusters:
            try:
                self.scrapers[c.name] = ClusterScraper(c, kube=self.settings.kubernetes)
            except ClusterConfigError as exc:
                # One bad kubeconfig must not stop the other clusters.
                self.config_errors[c.name] = str(exc)
                SCRAPE_ERRORS.labels(c.name, "config").inc()
                log.error("%s", exc)
        if self.create_topics:
            await create_topics(self.settings, [self.metrics_topic, self.events_topic, self.quotas_topic, self.autoscalers_topic])
        k = self.settings.kubernetes
        publisher = Publisher(self.settings.kafka, timeout_s=k.publish_timeout_s, buffer_bytes=k.publish_buffer_bytes)
        await publisher.start()
        self._publisher = publisher

    async def close(self) -> None:
        self._thread_stop.set()
        for w in self.watchers.values():
            w.interrupt()
        for t in self._threads:
            await asyncio.to_thread(t.join, 15)
        self._threads.clear()
        if self._publisher is not None:
            await self._publisher.stop()
            self._publisher = None
        for s in self.scrapers.values():
            s.close()

    # -- publishing ------------------------------------------------------------

    def ready(self) -> bool:
        """/readyz: started, and no record is being sent again (or waiting long) for Kafka's confirmation."""
        return self._publisher is not None and not self._publisher.failing

    def _sender(self, cluster: str, *, topic: str, kind: str) -> Callable[[str, bytes], Any]:
        publisher = self._publisher
        assert publisher is not None, "Collector.start() first"

        async def send(key: str, value: bytes) -> asyncio.Future[None]:
            return await publisher.send(topic, key, value, cluster=cluster, kind=kind)

        return send

    # -- running -------------------------------------------------------------

    def _failed_report(self, name: str) -> PassReport:
        return PassReport(name, errors=1, error=self.config_errors[name])

    async def scrape_once(self) -> list[PassReport]:
        """One pass over every cluster, concurrently; a report per cluster, in configuration order."""
        names = [c.name for c in self.clusters]

        async def one(name: str) -> PassReport:
            if name in self.config_errors:
                return self._failed_report(name)
            return await self._one(name)

        return list(await asyncio.gather(*(one(n) for n in names)))

    def _start_watchers(self, loop: asyncio.AbstractEventLoop) -> None:
        for name, scraper in self.scrapers.items():

            def emit(event: KubeEvent, _cluster: str = name) -> None:
                publisher = self._publisher
                assert publisher is not None, "Collector.start() first"
                data = encode(event)
                fut = asyncio.run_coroutine_threadsafe(
                    publisher.publish(self.events_topic, event.key, data, cluster=_cluster, kind="events"), loop)
                # Backpressure: the watch thread waits for Kafka's ack. PublishFailed propagates, so the
                # watcher does not mark the event seen and offers it again.
                fut.result()

            watcher = EventWatcher(
                scraper.client,
                cluster=name,
                emit=emit,
                stop=self._thread_stop,
                watch_timeout_s=self.watch_timeout_s,
                retry_max_s=self.settings.kubernetes.retry_max_s,
            )
            self.watchers[name] = watcher
            t = threading.Thread(target=watcher.run, name=f"kp-events-{name}", daemon=True)
            t.start()
            self._threads.append(t)

    async def _cluster_loop(self, name: str, *, iterations: int | None, stop: asyncio.Event) -> None:
        k = self.settings.kubernetes
        failures = 0
        done = 0
        while not stop.is_set() and (iterations is None or done < iterations):
            start = asyncio.get_running_loop().time()
            if name in self.config_errors:
                report = self._failed_report(name)
                if self.on_pass:
                    self.on_pass(report)
            else:
                report = await self._one(name)
            done += 1
            if iterations is not None and done >= iterations:
                break
            if report.error:
                failures += 1
                delay = min(k.retry_max_s, 2.0**failures) * random.uniform(0.5, 1.0)
            else:
                failures = 0
                elapsed = asyncio.get_running_loop().time() - start
                delay = max(0.0, k.interval_s - elapsed + random.uniform(-k.jitter_s, k.jitter_s))
            try:
                await asyncio.wait_for(stop.wait(), timeout=delay)
            except TimeoutError:
                pass

    async def _one(self, name: str) -> PassReport:
        try:
            report = await self.scrapers[name].scrape_once(
                self._sender(name, topic=self.metrics_topic, kind="metrics"),
                publish_quota=self._sender(name, topic=self.quotas_topic, kind="quotas"),
                publish_autoscaler=self._sender(name, topic=self.autoscalers_topic, kind="autoscalers"),
            )
        except Exception as exc:  # noqa: BLE001 - one cluster's bug or payload must not end the others' loops
            log.exception("cluster %s: pass failed with an unexpected error", name)
            SCRAPE_ERRORS.labels(name, "internal").inc()
            report = PassReport(name, errors=1, error=f"cluster {name}: unexpected {type(exc).__name__}: {exc}")
        watcher = self.watchers.get(name)
        if watcher is not None:
            report.events_error = watcher.error
        if report.error:
            log.warning("cluster %s: pass failed: %s", name, report.error)
        if self.on_pass:
            self.on_pass(report)
        return report

    async def run(self, *, iterations: int | None = None, stop: asyncio.Event | None = None) -> None:
        """Scrape every cluster every interval until ``stop`` is set or each ran ``iterations`` passes.

        Events are watched meanwhile (in threads) when ``events`` is on.
        """
        stop = stop or asyncio.Event()
        if self.events and not self._threads:
            self._start_watchers(asyncio.get_running_loop())
        await asyncio.gather(*(self._cluster_loop(c.name, iterations=iterations, stop=stop) for c in self.clusters))
