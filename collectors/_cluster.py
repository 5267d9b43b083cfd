"""One pass over one cluster: list nodes and pods, scrape every node's Summary, publish NodeScrapes, QuotaScrapes and AutoscalerScrapes.

ResourceQuotas and HorizontalPodAutoscalers are listed once per pass beside
the node and pod lists and published as one record each; a cluster that
forbids listing them still gets its node scrapes (the missing rule is logged once).

Node scrapes run in a thread pool bounded by ``kubernetes.concurrency``
(the official client is synchronous); parsing, joining, validating and
encoding happen in the worker thread too, so the event loop only hands
finished bytes to the Kafka producer. Each cluster has its own pool and
client, so a slow or failing cluster never holds up another.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import orjson

from collectors._inventory import NodeInfo, Owners, PodInfo, parse_node, parse_pod
from collectors._kube import KubeClient
from collectors._metrics import PASS_DURATION, RECORDS_LOST, SCRAPE_ERRORS
from collectors._autoscalers import parse_autoscaler
from collectors._quotas import parse_quota
from collectors._rates import Counters
from collectors._summary import build_from_metrics, build_from_summary
from collectors.errors import AccessDenied, ApiError, MalformedPayload, PublishFailed
from collectors.rbac import (
    LIST_AUTOSCALERS,
    LIST_JOBS,
    LIST_NODE_METRICS,
    LIST_NODES,
    LIST_POD_METRICS,
    LIST_PODS,
    LIST_REPLICASETS,
    LIST_RESOURCEQUOTAS,
    NODE_SUMMARY,
)
from models.codec import encode
from models.settings import ClusterSettings, KubernetesSettings

log = logging.getLogger("kubepulse.collectors")

Publish = Callable[[str, bytes], Awaitable[Awaitable[None]]]
"""``await publish(key, value)`` hands one encoded record (a NodeScrape, a QuotaScrape...) to Kafka once
there is room (the wait is the backpressure of a slow Kafka); awaiting what it returns waits for
Kafka's confirmation. Either raises :class:`PublishFailed` when the record was given up."""


@dataclass(slots=True)
class PassReport:
    """What one pass over one cluster did (a row of ``kubepulse collect --once``)."""

    cluster: str
    nodes: int = 0
    pods: int = 0
    samples: int = 0
    """Node, pod and container samples published."""
    quotas: int = 0
    """ResourceQuotas published."""
    errors: int = 0
    duration_s: float = 0.0
    source: str = "summary"
    error: str | None = None
    """Why the whole pass failed (unreachable, forbidden...), None when it ran."""
    node_errors: dict[str, str] = field(default_factory=dict)
    quota_error: str | None = None
    """Why no quotas were published (e.g. the missing ``resourcequotas`` rule), None when they were."""
    autoscalers: int = 0
    """HorizontalPodAutoscalers published."""
    autoscaler_error: str | None = None
    """Why no HPAs were published (e.g. the missing ``horizontalpodautoscalers`` rule), None when they were."""
    lost: int = 0
    """Records Kafka did not confirm within ``kubernetes.publish_timeout_s`` (the pass then failed)."""
    events_error: str | None = None
    """Why the cluster's event watch is failing right now (it is retried with backoff), None when it is not."""


@dataclass(frozen=True, slots=True)
class _Listed:
    """An extra listed once per pass and published one record per object (ResourceQuotas, HPAs)."""

    kind: str
    """The :class:`PassReport` field counting them."""
    error_field: str
    label: str
    call: Any
    parse: Callable[..., Any]


_QUOTAS = _Listed("quotas", "quota_error", "ResourceQuotas", LIST_RESOURCEQUOTAS, parse_quota)
_AUTOSCALERS = _Listed("autoscalers", "autoscaler_error", "HorizontalPodAutoscalers", LIST_AUTOSCALERS, parse_autoscaler)


def _meta(obj: Any, field: str) -> str | None:
    """``obj.metadata.<field>`` when it is a non-empty string, else None (whatever the shape)."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    value = meta.get(field) if isinstance(meta, dict) else None
    return value if isinstance(value, str) and value else None


def _internal(exc: Exception) -> ApiError:
    """An unexpected error of one unit (a node) as the ApiError the pass reports, labelled ``internal``."""
    err = ApiError(f"unexpected {type(exc).__name__}: {exc}")
    err.reason = "internal"
    return err


class ClusterScraper:
    """Scrapes one cluster, pass after pass, keeping counters and owner caches between passes."""

    def __init__(self, cluster: ClusterSettings, *, kube: KubernetesSettings, client: KubeClient | None = None) -> None:
        self.cluster = cluster.name
        self.kube = kube
        self.client = client or KubeClient(
            cluster, timeout_s=kube.request_timeout_s, pool_size=kube.concurrency + 2, retry_max_s=kube.retry_max_s
        )
        self.pool = ThreadPoolExecutor(max_workers=kube.concurrency, thread_name_prefix=f"kp-{cluster.name}")
        self.counters = Counters()
        self.owners = Owners()
        self.source = "summary"
        self._warned_fallback = False
        self._warned: set[str] = set()
        """Kinds of listed extras (quotas, autoscalers) whose missing rule has been logged."""

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()

    def _error(self, report: PassReport, node: str, exc: ApiError) -> None:
        report.errors += 1
        report.node_errors[node] = str(exc)
        SCRAPE_ERRORS.labels(self.cluster, exc.reason).inc()
        log.warning("cluster %s: node %s skipped (%s): %s", self.cluster, node, exc.reason, exc)

    def _lost(self, report: PassReport, kind: str, key: str, exc: PublishFailed) -> None:
        report.lost += 1
        report.errors += 1
        report.error = report.error or str(exc)
        RECORDS_LOST.labels(self.cluster, kind, exc.reason).inc()
        log.error("cluster %s: %s record %s lost: %s", self.cluster, kind, key, exc)

    async def _hand_over(self, publish: Publish, key: str, data: bytes, report: PassReport, kind: str
                         ) -> Awaitable[None] | None:
        """The record's confirmation, or None when it was given up waiting for room (counted lost)."""
        try:
            return await publish(key, data)
        except PublishFailed as exc:
            self._lost(report, kind, key, exc)
            return None

    async def _confirmed(self, report: PassReport, kind: str, sent: list[tuple[str, Awaitable[None]]]) -> list[bool]:
        """Wait for every confirmation; one bool per record, False for each lost (counted, the pass failed)."""
        results = await asyncio.gather(*(fut for _, fut in sent), return_exceptions=True)
        ok: list[bool] = []
        for (key, _), r in zip(sent, results, strict=True):
            if isinstance(r, PublishFailed):
                self._lost(report, kind, key, r)
            elif isinstance(r, BaseException):
                raise r
            ok.append(r is None)
        return ok

    # -- blocking parts, run in the pool ----------------------------------

    def _inventory(self, node_items: list[dict[str, Any]], pods_items: list[dict[str, Any]]) -> tuple[list[NodeInfo], list[PodInfo]]:
        try:
            nodes = [parse_node(o) for o in node_items]
            pods = [parse_pod(o) for o in pods_items]
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise MalformedPayload(f"cluster {self.cluster}: node or pod list is malformed: {type(exc).__name__}: {exc}") from exc
        need = self.owners.unknown(pods)
        if "ReplicaSet" in need:
            self.owners.set_replicasets(self.client.list_all(LIST_REPLICASETS)[0])
        if "Job" in need:
            self.owners.set_jobs(self.client.list_all(LIST_JOBS)[0])
        for p in pods:
            self.owners.resolve(p)
        return nodes, pods

    def _scrape_node(self, node: NodeInfo, pods: dict[tuple[str, str], PodInfo]) -> tuple[bytes, int, int]:
        body = self.client.get(NODE_SUMMARY, name=node.name)
        try:
            summary = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            raise MalformedPayload(f"summary of node {node.name} is not JSON: {exc}") from exc
        return build_from_summary(summary, cluster=self.cluster, node=node, pods=pods, counters=self.counters)

    def _metrics_pass(self, nodes: list[NodeInfo], pods: dict[tuple[str, str], PodInfo]
                      ) -> tuple[list[tuple[str, Any]], list[str]]:
        """Each node's NodeScrape (or its error), and why items that name no node were skipped.

        A bad item fails only its node (or, naming none, only itself): the other nodes are published.
        """
        node_items, _ = self.client.list_all(LIST_NODE_METRICS)
        pod_items, _ = self.client.list_all(LIST_POD_METRICS)
        bad: list[str] = []
        by_name: dict[str, dict[str, Any]] = {}
        for o in node_items:
            name = _meta(o, "name")
            if name is None:
                bad.append(f"NodeMetrics without metadata.name: {str(o)[:200]}")
            else:
                by_name[name] = o
        pods_by_node: dict[str, list[dict[str, Any]]] = {}
        for pm in pod_items:
            ns, name = _meta(pm, "namespace"), _meta(pm, "name")
            if ns is None or name is None:
                bad.append(f"PodMetrics without metadata.namespace and name: {str(pm)[:200]}")
                continue
            info = pods.get((ns, name))
            if info is not None and info.node:
                pods_by_node.setdefault(info.node, []).append(pm)
        out: list[tuple[str, Any]] = []
        for n in nodes:
            try:
                out.append((n.name, build_from_metrics(by_name.get(n.name), pods_by_node.get(n.name, []), cluster=self.cluster, node=n, pods=pods)))
            except MalformedPayload as exc:
                out.append((n.name, exc))
            except Exception as exc:  # noqa: BLE001 - a bug on one node's data must not end the pass
                log.exception("cluster %s: node %s: unexpected error in its metrics.k8s.io data", self.cluster, n.name)
                out.append((n.name, _internal(exc)))
        return out, bad

    def _listed(self, what: _Listed, at: datetime) -> tuple[list[tuple[str, bytes]], list[str]]:
        items, _ = self.client.list_all(what.call)
        out: list[tuple[str, bytes]] = []
        bad: list[str] = []
        for obj in items:
            try:
                r = what.parse(obj, cluster=self.cluster, at=at)
            except MalformedPayload as exc:
                bad.append(str(exc))  # one bad object must not hide the others
                continue
            out.append((r.key, encode(r)))
        return out, bad

    # -- the pass -----------------------------------------------------------

    async def _listed_pass(self, what: _Listed, publish: Publish, report: PassReport, at: datetime) -> None:
        loop = asyncio.get_running_loop()
        try:
            records, bad = await loop.run_in_executor(self.pool, self._listed, what, at)
        except ApiError as exc:
            setattr(report, what.error_field, str(exc))
            if isinstance(exc, AccessDenied) and exc.status == 403:
                # Quotas and HPAs are extras: without the rule the collector goes on
                # with metrics and events, and says once which rule to add.
                if what.kind not in self._warned:
                    log.warning("%s. Collecting metrics and events without %s until it is granted.", exc, what.label)
                    self._warned.add(what.kind)
                return
            # Already retried (429/5xx/timeouts) by the client: fail the pass so
            # the cluster loop backs off, as for the node and pod lists.
            report.error = report.error or str(exc)
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, exc.reason).inc()
            return
        except Exception as exc:  # noqa: BLE001 - a bug here must not end the pass or lose its node scrapes
            log.exception("cluster %s: %s: unexpected error", self.cluster, what.call.resource)
            setattr(report, what.error_field, f"unexpected {type(exc).__name__}: {exc}")
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, "internal").inc()
            return
        if what.kind in self._warned:
            log.warning("cluster %s: listing %s is allowed again; publishing %s", self.cluster, what.call.resource, what.label)
            self._warned.discard(what.kind)
        for reason in bad:
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, MalformedPayload.reason).inc()
            log.warning("cluster %s: %s skipped (malformed): %s", self.cluster, what.label, reason)
        sent: list[tuple[str, Awaitable[None]]] = []
        for key, data in records:
            fut = await self._hand_over(publish, key, data, report, what.kind)
            if fut is not None:
                sent.append((key, fut))
        setattr(report, what.kind, sum(await self._confirmed(report, what.kind, sent)))

    async def scrape_once(self, publish: Publish, *, publish_quota: Publish | None = None,
                          publish_autoscaler: Publish | None = None) -> PassReport:
        """One full pass; never raises for a cluster-level failure (it is in ``report.error``).

        With ``publish_quota`` (``publish_autoscaler``), the cluster's ResourceQuotas
        (HorizontalPodAutoscalers) are listed and published too, stamped with the pass's start time.
        """
        report = PassReport(self.cluster)
        t0 = time.monotonic()
        at = datetime.now(timezone.utc)
        extras = [asyncio.ensure_future(self._listed_pass(what, pub, report, at))
                  for what, pub in ((_QUOTAS, publish_quota), (_AUTOSCALERS, publish_autoscaler)) if pub is not None]
        try:
            listed = await self._node_pass(publish, report)
        finally:
            if extras:
                await asyncio.gather(*extras)
        report.duration_s = time.monotonic() - t0
        if listed:
            PASS_DURATION.labels(self.cluster).observe(report.duration_s)
        return report

    async def _node_pass(self, publish: Publish, report: PassReport) -> bool:
        """Scrape and publish every node; False when the node or pod list failed (nothing scraped)."""
        loop = asyncio.get_running_loop()
        try:
            (node_items, _), (pod_items, _) = await asyncio.gather(
                loop.run_in_executor(self.pool, self.client.list_all, LIST_NODES),
                loop.run_in_executor(self.pool, self.client.list_all, LIST_PODS),
            )
            nodes, pods = await loop.run_in_executor(self.pool, self._inventory, node_items, pod_items)
        except ApiError as exc:
            report.error = str(exc)
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, exc.reason).inc()
            return False
        pod_index = {(p.namespace, p.name): p for p in pods}
        pods_by_node: dict[str, dict[tuple[str, str], PodInfo]] = {}
        for p in pods:
            if p.node:
                pods_by_node.setdefault(p.node, {})[(p.namespace, p.name)] = p

        async def node_result(n: NodeInfo) -> tuple[str, Any]:
            try:
                return n.name, await loop.run_in_executor(self.pool, self._scrape_node, n, pods_by_node.get(n.name, {}))
            except ApiError as exc:
                return n.name, exc
            except Exception as exc:  # noqa: BLE001 - a bug on one node must not end the pass
                log.exception("cluster %s: node %s: unexpected error", self.cluster, n.name)
                return n.name, _internal(exc)

        results: list[tuple[str, Any]] = []
        rest = nodes
        if nodes:
            # Probe with the first node: when nodes/proxy is forbidden every
            # node would answer 403, so learn it once and switch source.
            first = await node_result(nodes[0])
            if isinstance(first[1], AccessDenied):
                rest = []
                results = await self._fallback_pass(first[1], nodes, pod_index, report)
            else:
                if self.source != "summary":
                    log.warning("cluster %s: nodes/proxy is allowed again; back to the kubelet Summary API", self.cluster)
                    self._warned_fallback = False
                self.source = "summary"
                results = [first]
                rest = nodes[1:]
        report.source = self.source

        await self._publish_nodes(publish, report, results, [node_result(n) for n in rest])
        # Forget counters of pods gone for a while (ten intervals).
        self.counters.sweep(10 * self.kube.interval_s)
        return True

    async def _fallback_pass(self, denied: AccessDenied, nodes: list[NodeInfo], pod_index: dict[tuple[str, str], PodInfo],
                             report: PassReport) -> list[tuple[str, Any]]:
        """nodes/proxy is forbidden: every node's CPU and memory from metrics.k8s.io instead (nothing on a failure)."""
        if not self._warned_fallback:
            log.warning("%s. Falling back to metrics.k8s.io (CPU and memory only) until it is granted.", denied)
            self._warned_fallback = True
        self.source = "metrics.k8s.io"
        try:
            results, bad = await asyncio.get_running_loop().run_in_executor(self.pool, self._metrics_pass, nodes, pod_index)
        except ApiError as exc:
            report.error = str(exc)
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, exc.reason).inc()
            return []
        except Exception as exc:  # noqa: BLE001 - fails this cluster's pass only
            log.exception("cluster %s: metrics.k8s.io pass: unexpected error", self.cluster)
            report.error = f"cluster {self.cluster}: metrics.k8s.io: unexpected {type(exc).__name__}: {exc}"
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, "internal").inc()
            return []
        for reason in bad:
            report.errors += 1
            SCRAPE_ERRORS.labels(self.cluster, MalformedPayload.reason).inc()
            log.warning("cluster %s: metrics.k8s.io item skipped (malformed): %s", self.cluster, reason)
        return results

    async def _publish_nodes(self, publish: Publish, report: PassReport, results: list[tuple[str, Any]],
                             pending: list[Awaitable[tuple[str, Any]]]) -> None:
        """Hand each node's scrape to Kafka (``results`` first, then ``pending`` as they finish); count what Kafka confirmed."""
        sent: list[tuple[str, Awaitable[None]]] = []
        counts: list[tuple[int, int]] = []

        async def handle(name: str, result: Any) -> None:
            if isinstance(result, ApiError):
                self._error(report, name, result)
                return
            data, npods, nsamples = result
            key = f"{self.cluster}/{name}"
            # Waits while the publish buffer is full: scraping pauses rather than piling up scrapes.
            fut = await self._hand_over(publish, key, data, report, "metrics")
            if fut is not None:
                sent.append((key, fut))
                counts.append((npods, nsamples))

        for name, result in results:
            await handle(name, result)
        for fut in asyncio.as_completed(pending):
            name, result = await fut
            await handle(name, result)
        # Nodes, pods and samples count once Kafka confirmed them.
        for ok, (npods, nsamples) in zip(await self._confirmed(report, "metrics", sent), counts, strict=True):
            if ok:
                report.nodes += 1
                report.pods += npods
                report.samples += nsamples
