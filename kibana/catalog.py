"""The dashboards, panels and saved searches kubepulse ships, declared as specs (see ``kibana._specs``).

Field names are the index mappings' (``streams.index``): ECS for identity
(``orchestrator.cluster.name``, ``kubernetes.namespace``) and Metricbeat's
kubernetes names for measurements; rollups' statistics are
``<metric root>.<stat>`` (``streams.index.rollup_field``). The unit tests check
every field used here against those mappings, and the integration tests run
every panel's query against real Elasticsearch filled with simulated fleet data.
This module imports nothing of kubepulse: dashboards depend on the index
contract, not on the agents.

Totals without double counting: a node is scraped every 15 s, so a plain
``sum`` over a time bucket counts each node once per scrape in it. The fleet
totals are therefore Lens formulas that stay right whatever the bucket size:
a share is ``sum(used) / sum(allocatable)`` (both sums over the same
documents), and a total is ``average(x) * unique_count(node)`` (the
average per node document times the nodes reporting).
"""

from __future__ import annotations

from kibana._specs import (
    Agg,
    AtLeast,
    Bin,
    DashboardSpec,
    DateHistogram,
    Exists,
    Formula,
    Is,
    Metric,
    Not,
    Panel,
    SearchSpec,
    Terms,
)

__all__ = ["DASHBOARDS", "SEARCHES", "DATA_VIEW_KINDS", "TIME_FIELD", "STORAGE_FORECAST_RULES", "all_panels"]

TIME_FIELD = "@timestamp"

DATA_VIEW_KINDS: tuple[str, ...] = (
    "metrics", "events", "rollups-1m", "rollups-1h", "anomalies", "alerts", "notifications", "incidents", "deadletter", "quotas",
    "autoscalers", "capacity", "recommendations",
)
"""One data view per index kind's alias (one per rollup window: their documents must not be aggregated
together); the order is the order in the NDJSON file."""

T = DateHistogram()
NODE = (Is("metricset.name", "node"),)
POD = (Is("metricset.name", "pod"),)
CONTAINER = (Is("metricset.name", "container"),)
VOLUME = (Is("metricset.name", "volume"),)
FIRING = (Is("kubepulse.alert.status", "firing"),)
NODE_INTERFACE = (Is("metricset.name", "node_interface"),)
NAMESPACE_SUMS = (Is("metricset.name", "namespace"),)
CLUSTER = Terms("orchestrator.cluster.name", 10, "Cluster")


STORAGE_FORECAST_RULES: tuple[str, ...] = (
    "kubernetes-storage/KubePersistentVolumeFillingUp/warning",
    "kubernetes-storage/KubePersistentVolumeFullSoon",
    "node/NodeFilesystemSpaceFillingUp/critical",
    "node/NodeFilesystemSpaceFillingUp/warning",
)
"""Rule ids (``rule.name``) of the default pack's predictive storage rules: their alerts are the fill forecasts.

Ids, not alert names: ``KubePersistentVolumeFillingUp`` is both a threshold rule (value: the used share) and
a predictive one (value: seconds until full), and only the latter is a forecast. Written out rather than
read from the rule engine, so dashboards need nothing but the index contract; a unit test checks them
against the default pack."""


def _per_node_total(field: str) -> Bin:
    """average(x) * unique_count(node): the fleet total whatever the number of scrapes per bucket."""
    return Bin("multiply", Agg("average", field), Agg("unique_count", "kubernetes.node.name"))


def _share(used: str, of: str, *, scale: float | None = None) -> Bin:
    num = Bin("divide", Agg("sum", used), scale) if scale else Agg("sum", used)
    return Bin("divide", num, Agg("sum", of))


CPU_SHARE = _share("kubernetes.node.cpu.usage.nanocores", "kubernetes.node.cpu.allocatable.cores", scale=1e9)
MEM_SHARE = _share("kubernetes.node.memory.workingset.bytes", "kubernetes.node.memory.allocatable.bytes")
FS_SHARE = _share("kubernetes.node.fs.used.bytes", "kubernetes.node.fs.capacity.bytes")

# ----------------------------------------------------------------- fleet overview

FLEET = DashboardSpec(
    key="fleet-overview",
    nav_title="Fleet",
    title="[kubepulse] Fleet overview",
    description="Clusters, nodes and pods reporting; fleet CPU, memory, network and storage against allocatable; alerts and anomalies.",
    control_kind="metrics",
    panels=(
        Panel("fleet-clusters", "Clusters", "metrics", "metric", (Metric("unique_count", "orchestrator.cluster.name", "Clusters"),), w=8, h=6),
        Panel("fleet-nodes", "Nodes", "metrics", "metric", (Metric("unique_count", "kubernetes.node.name", "Nodes"),), where=NODE, w=8, h=6),
        Panel("fleet-pods", "Pods", "metrics", "metric", (Metric("unique_count", "kubernetes.pod.name", "Pods"),), where=POD, w=8, h=6),
        Panel(
            "fleet-cpu-share", "CPU used / allocatable", "metrics", "metric", (Formula(CPU_SHARE, "CPU of allocatable", "percent"),), where=NODE, w=8, h=6
        ),
        Panel(
            "fleet-memory-share",
            "Memory working set / allocatable",
            "metrics",
            "metric",
            (Formula(MEM_SHARE, "Memory of allocatable", "percent"),),
            where=NODE,
            w=8,
            h=6,
        ),
        Panel("fleet-fs-share", "Node filesystems used", "metrics", "metric", (Formula(FS_SHARE, "Filesystem used", "percent"),), where=NODE, w=8, h=6),
        Panel(
            "fleet-active-alerts",
            "Alerts fired",
            "alerts",
            "metric",
            (Metric("unique_count", "kubepulse.alert.fingerprint", "Alerts fired"),),
            where=FIRING,
            description="Distinct alerts that fired in the time range.",
            w=12,
            h=6,
        ),
        Panel("fleet-anomalies", "Anomalies", "anomalies", "metric", (Metric("count", None, "Anomalies"),), w=12, h=6),
        Panel(
            "fleet-alerts-by-severity",
            "Firing alerts by severity",
            "alerts",
            "bar_stacked",
            (Metric("count", None, "Firing transitions"),),
            x=T,
            split=Terms("kubepulse.alert.severity", 5, "Severity"),
            where=FIRING,
            h=6,
        ),
        Panel(
            "fleet-cpu-total",
            "CPU used per cluster (cores)",
            "metrics",
            "line",
            (Formula(Bin("divide", _per_node_total("kubernetes.node.cpu.usage.nanocores"), 1e9), "CPU used (cores)", "number"),),
            x=T,
            split=CLUSTER,
            where=NODE,
        ),
        Panel(
            "fleet-cpu-share-time",
            "CPU used / allocatable per cluster",
            "metrics",
            "line",
            (Formula(CPU_SHARE, "CPU of allocatable", "percent"),),
            x=T,
            split=CLUSTER,
            where=NODE,
        ),
        Panel(
            "fleet-memory-total",
            "Memory working set per cluster",
            "metrics",
            "line",
            (Formula(_per_node_total("kubernetes.node.memory.workingset.bytes"), "Memory working set", "bytes"),),
            x=T,
            split=CLUSTER,
            where=NODE,
        ),
        Panel(
            "fleet-memory-share-time",
            "Memory working set / allocatable per cluster",
            "metrics",
            "line",
            (Formula(MEM_SHARE, "Memory of allocatable", "percent"),),
            x=T,
            split=CLUSTER,
            where=NODE,
        ),
        Panel(
            "fleet-network",
            "Fleet network (bytes/s)",
            "metrics",
            "line",
            (
                Formula(_per_node_total("kubernetes.node.network.rx.bytes_per_s"), "Received", "bytes"),
                Formula(_per_node_total("kubernetes.node.network.tx.bytes_per_s"), "Sent", "bytes"),
            ),
            x=T,
            where=NODE,
        ),
        Panel(
            "fleet-storage",
            "Node filesystems used per cluster",
            "metrics",
            "line",
            (Formula(FS_SHARE, "Filesystem used", "percent"),),
            x=T,
            split=CLUSTER,
            where=NODE,
        ),
    ),
)

# ----------------------------------------------------------------- nodes

NODE_TERMS = Terms("kubernetes.node.name", 10, "Node")

NODES = DashboardSpec(
    key="nodes",
    nav_title="Nodes",
    title="[kubepulse] Nodes",
    description="Per node: CPU and memory against allocatable, network, filesystems.",
    control_kind="metrics",
    panels=(
        Panel(
            "nodes-table",
            "Nodes",
            "metrics",
            "table",
            (
                Metric("average", "kubernetes.node.cpu.usage.allocatable.pct", "CPU of allocatable", "percent"),
                Metric("average", "kubernetes.node.memory.workingset.allocatable.pct", "Memory of allocatable", "percent"),
                Metric("max", "kubernetes.node.fs.used.pct", "Filesystem used (max)", "percent"),
                Metric("average", "kubernetes.node.network.rx.bytes_per_s", "Received/s", "bytes"),
                Metric("average", "kubernetes.node.network.tx.bytes_per_s", "Sent/s", "bytes"),
            ),
            rows=(CLUSTER, Terms("kubernetes.node.name", 100, "Node")),
            where=NODE,
            w=48,
            h=14,
        ),
        Panel(
            "nodes-cpu",
            "CPU of allocatable per node",
            "metrics",
            "line",
            (Metric("average", "kubernetes.node.cpu.usage.allocatable.pct", "CPU of allocatable", "percent"),),
            x=T,
            split=NODE_TERMS,
            where=NODE,
        ),
        Panel(
            "nodes-memory",
            "Memory working set of allocatable per node",
            "metrics",
            "line",
            (Metric("average", "kubernetes.node.memory.workingset.allocatable.pct", "Memory of allocatable", "percent"),),
            x=T,
            split=NODE_TERMS,
            where=NODE,
        ),
        Panel(
            "nodes-network-rx",
            "Received per node (bytes/s)",
            "metrics",
            "line",
            (Metric("average", "kubernetes.node.network.rx.bytes_per_s", "Received/s", "bytes"),),
            x=T,
            split=NODE_TERMS,
            where=NODE,
        ),
        Panel(
            "nodes-fs",
            "Node filesystem used per node",
            "metrics",
            "line",
            (Metric("max", "kubernetes.node.fs.used.pct", "Filesystem used", "percent"),),
            x=T,
            split=NODE_TERMS,
            where=NODE,
        ),
    ),
)

# ----------------------------------------------------------------- workloads and pods

POD_TERMS = Terms("kubernetes.pod.name", 10, "Pod")

WORKLOADS = DashboardSpec(
    key="workloads",
    nav_title="Workloads and pods",
    title="[kubepulse] Workloads and pods",
    description="CPU and memory against requests and limits per workload and pod; container restarts.",
    control_kind="metrics",
    panels=(
        Panel(
            "workloads-table",
            "Workloads: usage against requests and limits",
            "metrics",
            "table",
            (
                Metric("average", "kubernetes.pod.cpu.usage.request.pct", "CPU of request", "percent"),
                Metric("max", "kubernetes.pod.cpu.usage.limit.pct", "CPU of limit (max)", "percent"),
                Metric("average", "kubernetes.pod.memory.working_set.request.pct", "Memory of request", "percent"),
                Metric("max", "kubernetes.pod.memory.working_set.limit.pct", "Memory of limit (max)", "percent"),
                Metric("unique_count", "kubernetes.pod.name", "Pods"),
            ),
            rows=(Terms("kubernetes.namespace", 20, "Namespace"), Terms("kubernetes.workload.name", 50, "Workload")),
            where=POD,
            w=48,
            h=14,
        ),
        Panel(
            "workloads-cpu-vs-request",
            "CPU per pod: used, requested, limit (cores, average)",
            "metrics",
            "line",
            (
                Formula(Bin("divide", Agg("average", "kubernetes.pod.cpu.usage.nanocores"), 1e9), "Used", "number"),
                Metric("average", "kubernetes.pod.cpu.request.cores", "Requested", "number"),
                Metric("average", "kubernetes.pod.cpu.limit.cores", "Limit", "number"),
            ),
            x=T,
            where=POD,
        ),
        Panel(
            "workloads-memory-vs-request",
            "Memory per pod: working set, requested, limit (average)",
            "metrics",
            "line",
            (
                Metric("average", "kubernetes.pod.memory.working_set.bytes", "Working set", "bytes"),
                Metric("average", "kubernetes.pod.memory.request.bytes", "Requested", "bytes"),
                Metric("average", "kubernetes.pod.memory.limit.bytes", "Limit", "bytes"),
            ),
            x=T,
            where=POD,
        ),
        Panel(
            "pods-cpu-limit",
            "CPU of limit, top pods",
            "metrics",
            "line",
            (Metric("max", "kubernetes.pod.cpu.usage.limit.pct", "CPU of limit", "percent"),),
            x=T,
            split=POD_TERMS,
            where=POD,
        ),
        Panel(
            "pods-memory-limit",
            "Memory working set of limit, top pods",
            "metrics",
            "line",
            (Metric("max", "kubernetes.pod.memory.working_set.limit.pct", "Memory of limit", "percent"),),
            x=T,
            split=POD_TERMS,
            where=POD,
        ),
        Panel(
            "pods-restarts",
            "Container restarts",
            "metrics",
            "table",
            (Metric("max", "kubernetes.container.status.restarts", "Restarts"),),
            rows=(Terms("kubernetes.namespace", 20, "Namespace"), Terms("kubernetes.pod.name", 50, "Pod"), Terms("kubernetes.container.name", 10, "Container")),
            where=(*CONTAINER, Exists("kubernetes.container.status.restarts")),
        ),
        Panel(
            "pods-terminated-reasons",
            "Last termination reasons",
            "metrics",
            "pie",
            (Metric("unique_count", "kubernetes.pod.name", "Pods"),),
            rows=(Terms("kubernetes.container.status.last_terminated_reason", 10, "Reason"),),
            where=CONTAINER,
        ),
    ),
)

# ----------------------------------------------------------------- network and storage

NET_STORAGE = DashboardSpec(
    key="network-storage",
    nav_title="Network and storage",
    title="[kubepulse] Network and storage",
    description="Per-interface rates and errors (from the rollups), filesystem and PVC usage, and fill forecasts (predictive alerts).",
    control_kind="metrics",
    panels=(
        Panel(
            "net-interface-rx",
            "Received per node interface (bytes/s, 1-minute rollups)",
            "rollups-1m",
            "line",
            (Metric("average", "kubernetes.node.network.rx_bytes_per_s.avg", "Received/s", "bytes"),),
            x=T,
            split=Terms("kubepulse.entity", 10, "Node interface"),
            where=NODE_INTERFACE,
        ),
        Panel(
            "net-interface-errors",
            "Node interface errors (errors/s, 1-minute rollups, worst minute)",
            "rollups-1m",
            "bar_stacked",
            (
                Metric("max", "kubernetes.node.network.rx_errors_per_s.max", "Receive errors/s (max)"),
                Metric("max", "kubernetes.node.network.tx_errors_per_s.max", "Send errors/s (max)"),
            ),
            x=T,
            where=NODE_INTERFACE,
        ),
        Panel(
            "net-pod-interfaces-hourly",
            "Pod interfaces, hourly (1-hour rollups; the current hour appears when it closes)",
            "rollups-1h",
            "table",
            (
                Metric("average", "kubernetes.pod.network.rx_bytes_per_s.avg", "Received/s", "bytes"),
                Metric("max", "kubernetes.pod.network.rx_bytes_per_s.max", "Received/s (peak)", "bytes"),
                Metric("average", "kubernetes.pod.network.tx_bytes_per_s.avg", "Sent/s", "bytes"),
                Metric("max", "kubernetes.pod.network.rx_errors_per_s.max", "Receive errors/s (peak)"),
            ),
            rows=(Terms("kubernetes.namespace", 20, "Namespace"), Terms("kubernetes.pod.name", 50, "Pod"), Terms("interface.name", 5, "Interface")),
            where=(Is("metricset.name", "pod_interface"),),
            w=48,
        ),
        Panel(
            "net-pod-rx",
            "Received per pod (bytes/s)",
            "metrics",
            "line",
            (Metric("average", "kubernetes.pod.network.rx.bytes_per_s", "Received/s", "bytes"),),
            x=T,
            split=POD_TERMS,
            where=POD,
        ),
        Panel(
            "net-pod-errors",
            "Network errors per node (errors/s)",
            "metrics",
            "bar_stacked",
            (
                Metric("max", "kubernetes.node.network.rx.errors_per_s", "Receive errors/s"),
                Metric("max", "kubernetes.node.network.tx.errors_per_s", "Send errors/s"),
            ),
            x=T,
            where=NODE,
        ),
        Panel(
            "storage-node-fs",
            "Node filesystems used",
            "metrics",
            "line",
            (Metric("max", "kubernetes.node.fs.used.pct", "Used", "percent"),),
            x=T,
            split=NODE_TERMS,
            where=NODE,
        ),
        Panel(
            "storage-pvc",
            "PersistentVolumeClaims used",
            "metrics",
            "line",
            (Metric("max", "kubernetes.volume.fs.used.pct", "Used", "percent"),),
            x=T,
            split=Terms("kubernetes.persistentvolumeclaim.name", 10, "PVC"),
            where=(*VOLUME, Exists("kubernetes.persistentvolumeclaim.name")),
        ),
        Panel(
            "storage-pvc-table",
            "PersistentVolumeClaims",
            "metrics",
            "table",
            (
                Metric("max", "kubernetes.volume.fs.used.pct", "Used", "percent"),
                Metric("max", "kubernetes.volume.fs.used.bytes", "Used bytes", "bytes"),
                Metric("max", "kubernetes.volume.fs.capacity.bytes", "Capacity", "bytes"),
                Metric("max", "kubernetes.volume.fs.inodes.pct", "Inodes used", "percent"),
            ),
            rows=(Terms("kubernetes.namespace", 20, "Namespace"), Terms("kubernetes.persistentvolumeclaim.name", 50, "PVC")),
            where=(*VOLUME, Exists("kubernetes.persistentvolumeclaim.name")),
        ),
        Panel(
            "storage-forecast",
            "Fill forecasts (predictive alerts: time until full)",
            "alerts",
            "table",
            (
                Metric("min", "kubepulse.alert.value", "Full in (s, soonest)", "duration"),
                Metric("unique_count", "kubernetes.pod.name", "Pods (volumes)"),
                Metric("count", None, "Transitions"),
            ),
            rows=(Terms("kubepulse.alert.name", 5, "Alert"), Terms("kubernetes.node.name", 50, "Node")),
            where=(Is("rule.name", *STORAGE_FORECAST_RULES), *FIRING),
            description="Firing predictive rules (linear trend over their window): the value is the predicted seconds until full.",
        ),
    ),
)

# ----------------------------------------------------------------- anomalies

ANOMALIES = DashboardSpec(
    key="anomalies",
    nav_title="Anomalies",
    title="[kubepulse] Anomalies",
    description="Anomaly scores over time with the series value and its baseline; the most anomalous series.",
    control_kind="anomalies",
    panels=(
        Panel(
            "anomaly-scores",
            "Anomaly score by metric (max)",
            "anomalies",
            "line",
            (Metric("max", "kubepulse.anomaly.score", "Score (max)", "number"),),
            x=T,
            split=Terms("kubepulse.metric", 10, "Metric"),
        ),
        Panel(
            "anomaly-value-baseline",
            "Anomalous values against their baseline (average)",
            "anomalies",
            "line",
            (
                Metric("average", "kubepulse.anomaly.value", "Value", "number"),
                Metric("average", "kubepulse.anomaly.baseline", "Baseline", "number"),
            ),
            x=T,
        ),
        Panel(
            "anomaly-top-series",
            "Most anomalous series",
            "anomalies",
            "table",
            (
                Metric("max", "kubepulse.anomaly.score", "Score (max)", "number"),
                Metric("max", "kubepulse.anomaly.value", "Value (max)", "number"),
                Metric("average", "kubepulse.anomaly.baseline", "Baseline", "number"),
                Metric("count", None, "Anomalies"),
            ),
            rows=(Terms("kubepulse.series_id", 25, "Series"),),
            w=48,
        ),
        Panel(
            "anomaly-by-cluster",
            "Anomalies by cluster and detector",
            "anomalies",
            "bar_stacked",
            (Metric("count", None, "Anomalies"),),
            x=T,
            split=Terms("kubepulse.anomaly.detector", 5, "Detector"),
        ),
        Panel(
            "anomaly-incidents",
            "Injected incidents (simulator ground truth)",
            "incidents",
            "bar_stacked",
            (Metric("count", None, "Incidents"),),
            x=T,
            split=Terms("kubepulse.incident.kind", 10, "Incident kind"),
        ),
    ),
)

# ----------------------------------------------------------------- namespaces and quotas

QUOTA_SHARE = "kubernetes.resourcequota.used.pct"
QUOTA_RESOURCE = Terms("kubernetes.resourcequota.resource", 5, "Resource")
NAMESPACE = Terms("kubernetes.namespace", 10, "Namespace")
MAX_QUOTA_SHARE = Metric("max", QUOTA_SHARE, "Used of hard (max)", "percent")
NAMESPACE_ENTITY = Terms("kubepulse.entity", 10, "Cluster/namespace")
"""A namespace's rollups are per cluster: one series per cluster and namespace (an average across clusters means nothing)."""

QUOTAS = DashboardSpec(
    key="quotas",
    nav_title="Namespaces and quotas",
    title="[kubepulse] Namespaces and quotas",
    description="ResourceQuotas: how much of each namespace's quota its pods use (requests, limits, pod count), "
    "the namespaces closest to their limits, and every quota above 80 %.",
    control_kind="quotas",
    panels=(
        Panel(
            "quota-resources-above-90",
            "Quota resources above 90 %",
            "quotas",
            "metric",
            (Metric("unique_count", "kubepulse.entity", "Resources above 90 %"),),
            where=(AtLeast(QUOTA_SHARE, 0.9),),
            description="Distinct (quota, resource) pairs used above 90 % in the time range: KubeQuotaAlmostFull territory.",
            w=16,
            h=6,
        ),
        Panel("quota-highest-share", "Highest quota use", "quotas", "metric", (Metric("max", QUOTA_SHARE, "Highest use", "percent"),), w=16, h=6),
        Panel(
            "quota-namespaces",
            "Namespaces with a quota",
            "quotas",
            "metric",
            (Metric("unique_count", "kubernetes.namespace", "Namespaces"),),
            w=16,
            h=6,
        ),
        Panel(
            "namespace-cpu",
            "CPU used per namespace (cores, 1-minute rollups)",
            "rollups-1m",
            "line",
            (Metric("average", "kubernetes.namespace_totals.cpu_cores.avg", "CPU used (cores)", "number"),),
            x=T,
            split=NAMESPACE_ENTITY,
            where=NAMESPACE_SUMS,
            description="The namespace's pods summed over its cluster by the stream worker, per minute (one line per cluster and namespace).",
        ),
        Panel(
            "namespace-memory",
            "Memory working set per namespace (1-minute rollups)",
            "rollups-1m",
            "line",
            (Metric("average", "kubernetes.namespace_totals.memory_working_set_bytes.avg", "Memory working set", "bytes"),),
            x=T,
            split=NAMESPACE_ENTITY,
            where=NAMESPACE_SUMS,
        ),
        Panel(
            "namespace-hourly",
            "Namespaces, hourly: use against requests (1-hour rollups; the current hour appears when it closes)",
            "rollups-1h",
            "table",
            (
                Metric("average", "kubernetes.namespace_totals.cpu_cores.avg", "CPU used (cores)", "number"),
                Metric("max", "kubernetes.namespace_totals.cpu_cores.max", "CPU used (peak scrape)", "number"),
                Metric("average", "kubernetes.namespace_totals.cpu_request_cores.avg", "CPU requested (cores)", "number"),
                Metric("average", "kubernetes.namespace_totals.memory_working_set_bytes.avg", "Memory working set", "bytes"),
                Metric("average", "kubernetes.namespace_totals.memory_request_bytes.avg", "Memory requested", "bytes"),
                Metric("max", "kubernetes.namespace_totals.pods.max", "Pods (max)", "number"),
            ),
            rows=(CLUSTER, Terms("kubernetes.namespace", 50, "Namespace")),
            where=NAMESPACE_SUMS,
            description="Pick a range of days to see how a namespace's use compares with what it reserves.",
            w=48,
        ),
        Panel("quota-top-namespaces", "Top namespaces by quota use", "quotas", "bar", (MAX_QUOTA_SHARE,), x=NAMESPACE, split=QUOTA_RESOURCE),
        Panel("quota-share-time", "Quota use over time, top namespaces", "quotas", "line", (MAX_QUOTA_SHARE,), x=T, split=NAMESPACE),
        Panel(
            "quota-above-80",
            "Quotas above 80 %",
            "quotas",
            "table",
            (
                Metric("max", QUOTA_SHARE, "Used of hard", "percent"),
                Metric("max", "kubernetes.resourcequota.used.value", "Used (cores, bytes or count)", "number"),
                Metric("max", "kubernetes.resourcequota.hard.value", "Hard", "number"),
            ),
            rows=(
                CLUSTER,
                Terms("kubernetes.namespace", 50, "Namespace"),
                Terms("kubernetes.resourcequota.name", 10, "ResourceQuota"),
                Terms("kubernetes.resourcequota.resource", 10, "Resource"),
            ),
            where=(AtLeast(QUOTA_SHARE, 0.8),),
            w=48,
        ),
        Panel(
            "quota-all",
            "Every quota",
            "quotas",
            "table",
            (
                MAX_QUOTA_SHARE,
                Metric("average", "kubernetes.resourcequota.used.value", "Used (average)", "number"),
                Metric("max", "kubernetes.resourcequota.hard.value", "Hard", "number"),
            ),
            rows=(CLUSTER, Terms("kubernetes.namespace", 50, "Namespace"), Terms("kubernetes.resourcequota.resource", 10, "Resource")),
            w=48,
            h=14,
        ),
    ),
)

# ----------------------------------------------------------------- searches

WARNING_EVENTS = SearchSpec(
    key="warning-events",
    title="[kubepulse] Warning events",
    kind="events",
    where=(Is("kubernetes.event.type", "Warning"),),
    columns=(
        "orchestrator.cluster.name",
        "kubernetes.namespace",
        "kubernetes.event.reason",
        "kubernetes.event.involved_object.kind",
        "kubernetes.event.involved_object.name",
        "kubernetes.event.count",
        "message",
    ),
    description="Kubernetes events of type Warning, newest first.",
)
FIRING_ALERTS = SearchSpec(
    key="firing-alerts",
    title="[kubepulse] Firing alerts",
    kind="alerts",
    where=FIRING,
    columns=(
        "kubepulse.alert.name",
        "kubepulse.alert.severity",
        "orchestrator.cluster.name",
        "kubernetes.namespace",
        "kubernetes.pod.name",
        "kubepulse.alert.value",
        "kubepulse.alert.annotations",
    ),
    description="Alert transitions to firing, newest first.",
)
DEAD_LETTERS = SearchSpec(
    key="dead-letters",
    title="[kubepulse] Dead letters",
    kind="deadletter",
    where=(),
    columns=("kubepulse.deadletter.source_topic", "kubepulse.deadletter.stage", "error.type", "error.message", "kubepulse.deadletter.offset"),
    description="Messages that could not be decoded or processed, with the reason.",
)
FAILED_NOTIFICATIONS = SearchSpec(
    key="failed-notifications",
    title="[kubepulse] Failed notifications",
    kind="notifications",
    where=(Is("event.outcome", "failed", "retry"),),
    columns=("kubepulse.notification.receiver", "kubepulse.notification.integration", "kubepulse.notification.attempt", "http.response.status_code", "error.message"),
    description="Notification attempts that failed or are being retried.",
)

SEARCHES: tuple[SearchSpec, ...] = (WARNING_EVENTS, FIRING_ALERTS, DEAD_LETTERS, FAILED_NOTIFICATIONS)

# ----------------------------------------------------------------- alerts

ALERTS = DashboardSpec(
    key="alerts",
    nav_title="Alerts",
    title="[kubepulse] Alerts",
    description="Firing and resolved transitions, by severity and rule; notifications by receiver (the receiver panels "
    "come from the notifications index, which has no cluster or namespace: the controls empty them).",
    control_kind="alerts",
    panels=(
        Panel(
            "alerts-timeline",
            "Firing and resolved transitions",
            "alerts",
            "bar_stacked",
            (Metric("count", None, "Transitions"),),
            x=T,
            split=Terms("kubepulse.alert.status", 2, "Status"),
        ),
        Panel(
            "alerts-severity",
            "Firing by severity",
            "alerts",
            "bar_stacked",
            (Metric("count", None, "Firing transitions"),),
            x=T,
            split=Terms("kubepulse.alert.severity", 5, "Severity"),
            where=FIRING,
        ),
        Panel(
            "alerts-by-rule",
            "Alerts by rule",
            "alerts",
            "table",
            (
                Metric("unique_count", "kubepulse.alert.fingerprint", "Alerts"),
                Metric("count", None, "Firing", where=FIRING),
                Metric("count", None, "Resolved", where=(Is("kubepulse.alert.status", "resolved"),)),
            ),
            rows=(Terms("kubepulse.alert.name", 25, "Alert"), Terms("kubepulse.alert.severity", 5, "Severity")),
        ),
        Panel(
            "alerts-receivers",
            "Notifications by receiver",
            "notifications",
            "bar_stacked",
            (Metric("count", None, "Notifications"),),
            x=T,
            split=Terms("kubepulse.notification.receiver", 10, "Receiver"),
        ),
        Panel(
            "alerts-receiver-outcomes",
            "Notification outcomes by receiver",
            "notifications",
            "table",
            (Metric("count", None, "Attempts"), Metric("unique_count", "kubepulse.notification.group_key", "Groups")),
            rows=(
                Terms("kubepulse.notification.receiver", 20, "Receiver"),
                Terms("kubepulse.notification.integration", 6, "Integration"),
                Terms("event.outcome", 4, "Outcome"),
            ),
        ),
        FIRING_ALERTS,
    ),
)

# ----------------------------------------------------------------- events

EVENTS = DashboardSpec(
    key="events",
    nav_title="Events",
    title="[kubepulse] Kubernetes events",
    description="Event reasons over time and the warnings behind them.",
    control_kind="events",
    panels=(
        Panel(
            "events-reasons",
            "Event reasons over time",
            "events",
            "bar_stacked",
            (Metric("count", None, "Events"),),
            x=T,
            split=Terms("kubernetes.event.reason", 10, "Reason"),
            w=32,
        ),
        Panel(
            "events-types",
            "Event types",
            "events",
            "pie",
            (Metric("count", None, "Events"),),
            rows=(Terms("kubernetes.event.type", 3, "Type"),),
            w=16,
        ),
        Panel(
            "events-warnings",
            "Warnings by object",
            "events",
            "table",
            (Metric("sum", "kubernetes.event.count", "Occurrences"), Metric("count", None, "Events")),
            rows=(
                Terms("kubernetes.event.reason", 20, "Reason"),
                Terms("kubernetes.event.involved_object.kind", 5, "Kind"),
                Terms("kubernetes.event.involved_object.name", 50, "Object"),
            ),
            where=(Is("kubernetes.event.type", "Warning"),),
            w=48,
        ),
        Panel(
            "events-normal-reasons",
            "Routine reasons (not Warning)",
            "events",
            "bar_stacked",
            (Metric("count", None, "Events"),),
            x=T,
            split=Terms("kubernetes.event.reason", 10, "Reason"),
            where=(Not(Is("kubernetes.event.type", "Warning")),),
        ),
        WARNING_EVENTS,
    ),
)


# ----------------------------------------------------------------- capacity (kubepulse report run)

DAYS = "kubepulse.capacity.days_to_full"
ENTITY = Terms("kubepulse.entity", 50, "Entity")
RESOURCE = Terms("kubepulse.capacity.resource", 5, "Resource")
USE_CPU = (Is("kubepulse.capacity.resource", "cpu_use"),)
USE_MEMORY = (Is("kubepulse.capacity.resource", "memory_working_set"),)

CAPACITY = DashboardSpec(
    key="capacity",
    nav_title="Capacity",
    title="[kubepulse] Capacity",
    description="From `kubepulse report run` (daily): days until each node, namespace, cluster and volume reaches its "
    "allocatable, quota or capacity (trend with a daily profile, 80 % interval), and idle capacity (limit minus p95 use).",
    control_kind="capacity",
    panels=(
        Panel(
            "capacity-full-30d",
            "Full within 30 days",
            "capacity",
            "metric",
            (Metric("unique_count", "kubepulse.entity", "Entities full within 30 days"),),
            where=(Exists(DAYS), Not(AtLeast(DAYS, 30))),
            description="Nodes, namespaces, clusters and volumes with a resource whose daily peak reaches its limit within 30 days.",
            w=12,
            h=6,
        ),
        Panel("capacity-soonest", "Soonest full (days)", "capacity", "metric", (Metric("min", DAYS, "Soonest full (days)", "number"),),
              w=12, h=6),
        Panel(
            "capacity-idle-cpu",
            "Idle CPU in the clusters (cores)",
            "capacity",
            "metric",
            (Formula(Bin("multiply", Agg("average", "kubepulse.capacity.idle.cores"), Agg("unique_count", "kubepulse.entity")),
                     "Idle CPU (cores)", "number"),),
            where=(Is("kubepulse.capacity.entity_kind", "cluster"), *USE_CPU),
            description="Allocatable minus the p95 of the hourly CPU use, summed over the clusters (average per report run).",
            w=12,
            h=6,
        ),
        Panel(
            "capacity-idle-memory",
            "Idle memory in the clusters",
            "capacity",
            "metric",
            (Formula(Bin("multiply", Agg("average", "kubepulse.capacity.idle.bytes"), Agg("unique_count", "kubepulse.entity")),
                     "Idle memory", "bytes"),),
            where=(Is("kubepulse.capacity.entity_kind", "cluster"), *USE_MEMORY),
            w=12,
            h=6,
        ),
        Panel(
            "capacity-soonest-table",
            "Soonest to reach their limit",
            "capacity",
            "table",
            (
                Metric("min", DAYS, "Full in (days)", "number"),
                Metric("min", "kubepulse.capacity.days_to_full_low", "Earliest (days)", "number"),
                Metric("max", "kubepulse.capacity.days_to_full_high", "Latest (days)", "number"),
                Metric("max", "kubepulse.capacity.used.pct", "Used of limit", "percent"),
            ),
            rows=(CLUSTER, ENTITY, RESOURCE),
            where=(Exists(DAYS),),
            description="One row per entity and resource that reaches its limit within the horizon (a year).",
            w=48,
            h=14,
        ),
        Panel(
            "capacity-days-time",
            "Days to full, report by report",
            "capacity",
            "line",
            (Metric("min", DAYS, "Full in (days)", "number"),),
            x=T,
            split=Terms("kubepulse.entity", 10, "Entity"),
            where=(Exists(DAYS),),
            description="A forecast that holds moves down one day per day; a line that jumps is a trend that changed.",
        ),
        Panel(
            "capacity-idle-nodes",
            "Idle capacity per node",
            "capacity",
            "table",
            (
                Metric("average", "kubepulse.capacity.idle.cores", "Idle CPU (cores)", "number", where=USE_CPU),
                Metric("average", "kubepulse.capacity.idle.bytes", "Idle memory", "bytes", where=USE_MEMORY),
                Metric("max", "kubepulse.capacity.used.pct", "Highest use of allocatable", "percent"),
            ),
            rows=(CLUSTER, Terms("kubernetes.node.name", 100, "Node")),
            where=(Is("kubepulse.capacity.entity_kind", "node"),),
        ),
        Panel(
            "capacity-namespaces",
            "Namespaces against their quotas",
            "capacity",
            "table",
            (
                Metric("max", "kubepulse.capacity.used.pct", "Used of quota", "percent"),
                Metric("min", DAYS, "Full in (days)", "number"),
                Metric("min", "kubepulse.capacity.days_to_full_low", "Earliest (days)", "number"),
            ),
            rows=(CLUSTER, Terms("kubernetes.namespace", 50, "Namespace"), RESOURCE),
            where=(Is("kubepulse.capacity.entity_kind", "namespace"), Exists("kubepulse.capacity.limit_kind")),
            w=48,
        ),
    ),
)

# ----------------------------------------------------------------- right-sizing (kubepulse report run)

REC = "kubepulse.recommendation"
WORKLOAD_CONTAINER = (CLUSTER, Terms("kubernetes.namespace", 50, "Namespace"), Terms("kubernetes.workload.name", 100, "Workload"),
                      Terms("kubernetes.container.name", 10, "Container"))


def _fleet_total(field: str) -> Bin:
    """average(x) * unique_count(entity): the total over workloads per report run, however many runs the range holds."""
    return Bin("multiply", Agg("average", field), Agg("unique_count", "kubepulse.entity"))


RIGHTSIZING = DashboardSpec(
    key="rightsizing",
    nav_title="Right-sizing",
    title="[kubepulse] Right-sizing",
    description="From `kubepulse report run` (daily): recommended CPU and memory requests and limits per workload and container "
    "from 14 days of hourly rollups, and what today's requests waste. Requests an HPA scales against are held.",
    control_kind="recommendations",
    panels=(
        Panel("rightsize-cpu-waste", "CPU requested but not needed (cores)", "recommendations", "metric",
              (Formula(_fleet_total(f"{REC}.cpu.waste.total_cores"), "CPU waste (cores)", "number"),), w=12, h=6),
        Panel("rightsize-memory-waste", "Memory requested but not needed", "recommendations", "metric",
              (Formula(_fleet_total(f"{REC}.memory.waste.total_bytes"), "Memory waste", "bytes"),), w=12, h=6),
        Panel("rightsize-containers", "Workload containers", "recommendations", "metric",
              (Metric("unique_count", "kubepulse.entity", "Workload containers"),), w=12, h=6),
        Panel(
            "rightsize-held",
            "Held by an HPA",
            "recommendations",
            "metric",
            (Metric("unique_count", "kubepulse.entity", "Containers with a held request"),),
            where=(Exists(f"{REC}.held"),),
            description="Requests an HPA compares utilization against are kept: cutting them would scale the workload out.",
            w=12,
            h=6,
        ),
        Panel(
            "rightsize-table",
            "Recommendations, most waste first",
            "recommendations",
            "table",
            (
                Metric("average", f"{REC}.cpu.waste.total_cores", "CPU waste (cores, all replicas)", "number"),
                Metric("average", f"{REC}.cpu.request.current.cores", "CPU request now", "number"),
                Metric("average", f"{REC}.cpu.request.recommended.cores", "CPU request recommended", "number"),
                Metric("average", f"{REC}.memory.waste.total_bytes", "Memory waste (all replicas)", "bytes"),
                Metric("average", f"{REC}.memory.request.current.bytes", "Memory request now", "bytes"),
                Metric("average", f"{REC}.memory.request.recommended.bytes", "Memory request recommended", "bytes"),
                Metric("average", f"{REC}.memory.limit.recommended.bytes", "Memory limit recommended", "bytes"),
                Metric("min", f"{REC}.confidence", "Confidence", "number"),
            ),
            rows=WORKLOAD_CONTAINER,
            w=48,
            h=16,
        ),
        Panel(
            "rightsize-waste-time",
            "Waste, report by report",
            "recommendations",
            "line",
            (Formula(_fleet_total(f"{REC}.cpu.waste.total_cores"), "CPU waste (cores)", "number"),),
            x=T,
            split=CLUSTER,
        ),
        Panel(
            "rightsize-waste-namespaces",
            "CPU waste per namespace (cores)",
            "recommendations",
            "bar",
            (Formula(_fleet_total(f"{REC}.cpu.waste.total_cores"), "CPU waste (cores)", "number"),),
            x=Terms("kubernetes.namespace", 10, "Namespace"),
        ),
        Panel(
            "rightsize-hpa",
            "Workloads under an HPA",
            "recommendations",
            "table",
            (
                Metric("average", f"{REC}.cpu.request.current.cores", "CPU request (held)", "number"),
                Metric("average", f"{REC}.cpu.p95.cores", "CPU p95 per replica", "number"),
                Metric("average", f"{REC}.replicas", "Replicas", "number"),
            ),
            rows=(*WORKLOAD_CONTAINER, Terms("kubernetes.hpa.name", 10, "HPA")),
            where=(Exists("kubernetes.hpa.name"),),
            description="Lower their cost by raising the HPA's target utilization, not by cutting the request it divides by.",
            w=48,
        ),
    ),
)

DASHBOARDS: tuple[DashboardSpec, ...] = (FLEET, NODES, WORKLOADS, QUOTAS, NET_STORAGE, CAPACITY, RIGHTSIZING, ANOMALIES, ALERTS, EVENTS)


def all_panels() -> list[Panel]:
    """Every Lens panel of every dashboard (each key once)."""
    seen: dict[str, Panel] = {}
    for d in DASHBOARDS:
        for p in d.panels:
            if isinstance(p, Panel):
                if p.key in seen and seen[p.key] != p:
                    raise ValueError(f"panel key {p.key!r} is used by two different panels")
                seen[p.key] = p
    return list(seen.values())
