"""The records on kubepulse's Kafka topics: the only definition of the contract.

Every record is JSON, carries ``schema_version`` and is validated strictly on
the way in (``Model.model_validate_json``): unknown fields are rejected, a
string where a number belongs is rejected, counters and sizes are
non-negative, identity fields are non-empty. JSON Schemas (``kubepulse schema
export``) and Elasticsearch mappings are generated from these classes.

Units are in the field names: ``*_cores`` (CPU cores, a rate), ``*_bytes``,
``*_per_s`` (rates), ``*_seconds_total`` (counters), ``*_share`` (a fraction:
0.5 is half; above 1 is possible, e.g. usage above request).

=================  ============================  ==========================
topic              key                           record
=================  ============================  ==========================
metrics.v1         ``cluster/node``              :class:`NodeScrape`
events.v1          ``cluster/namespace/object``  :class:`KubeEvent`
quotas.v1          ``cluster/namespace/name``    :class:`QuotaScrape`
rollups.v2         entity id                     :class:`EntityRollup`
anomalies.v1       series id                     :class:`Anomaly`
alerts.v1          alert fingerprint             :class:`AlertTransition`
deadletter.v1      source topic                  :class:`DeadLetter`
incidents.v1       ``cluster``                   :class:`Incident`
notifications.v1   alert fingerprint             :class:`Notification`
silences.v1        silence id (compacted)        :class:`Silence`
alertgroups.v1     receiver and group key        :class:`AlertGroupState`
                   (compacted, internal)
=================  ============================  ==========================
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from models._fingerprint import fingerprint

__all__ = [
    "SCHEMA_VERSION",
    "Record",
    "Filesystem",
    "Interface",
    "Resources",
    "Volume",
    "ContainerSample",
    "PodSample",
    "NodeSample",
    "NodeScrape",
    "ObjectRef",
    "KubeEvent",
    "QuotaScrape",
    "AutoscalerMetric",
    "AutoscalerScrape",
    "MetricStats",
    "EntityRollup",
    "ENTITY_KINDS",
    "Anomaly",
    "AlertTransition",
    "DeadLetter",
    "Incident",
    "Notification",
    "Silence",
    "GroupDelivery",
    "AlertGroupState",
    "CapacityForecast",
    "Recommendation",
    "RECORD_TYPES",
    "REPORT_TYPES",
]

SCHEMA_VERSION = 1

Name = Annotated[str, Field(min_length=1, max_length=253)]
"""A Kubernetes object or cluster name: required, never empty."""
Segment = Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[^/]+$")]
"""A name that becomes one slot of series and entity ids (``cluster/namespace/pod/container``): no ``/``
(Kubernetes forbids it in these names; a cluster name is kubepulse's own and must follow suit)."""
Label = Annotated[str, Field(min_length=1, max_length=63, pattern=r"^[^/]+$")]
"""A name Kubernetes keeps to a DNS label (namespaces, containers, volumes): at most 63 characters, no ``/``.
Held to it here too, so that an id of several names (cluster/namespace/pod/container) stays within
:data:`LongId` however long each name is."""
LongId = Annotated[str, Field(min_length=1, max_length=1024)]
"""An id built from several names (cluster, namespace, pod, container): longer than any one name may be."""
Count = Annotated[int, Field(ge=0)]
Bytes = Annotated[int, Field(ge=0)]
Rate = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Share = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Finite = Annotated[float, Field(allow_inf_nan=False)]


class Record(BaseModel):
    """Base of every topic record: strict, closed, versioned."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=False)

    schema_version: Literal[1] = SCHEMA_VERSION


class _Part(BaseModel):
    """A nested part of a record (no version of its own)."""

    model_config = ConfigDict(strict=True, extra="forbid")


# --------------------------------------------------------------------------
# Node scrapes (kubepulse.metrics.v1)
# --------------------------------------------------------------------------


class Filesystem(_Part):
    """A filesystem's use, from kubelet's ``FsStats``."""

    used_bytes: Bytes | None = None
    capacity_bytes: Bytes | None = None
    available_bytes: Bytes | None = None
    inodes_used: Count | None = None
    inodes: Count | None = None
    inodes_free: Count | None = None

    @property
    def used_share(self) -> float | None:
        """Used bytes as a share of capacity (None when either is unknown)."""
        if self.used_bytes is None or not self.capacity_bytes:
            return None
        return self.used_bytes / self.capacity_bytes


class Interface(_Part):
    """One network interface: counters as read, rates since the last scrape.

    Rates are None on the first scrape of a series and across a counter reset
    (a restarted container or rebooted node), never negative.
    """

    name: Segment
    rx_bytes_total: Count | None = None
    tx_bytes_total: Count | None = None
    rx_errors_total: Count | None = None
    tx_errors_total: Count | None = None
    rx_bytes_per_s: Rate | None = None
    tx_bytes_per_s: Rate | None = None
    rx_errors_per_s: Rate | None = None
    tx_errors_per_s: Rate | None = None


class Volume(Filesystem):
    """A pod volume (``VolumeStats``), with its PersistentVolumeClaim if any."""

    name: Label
    pvc_name: str | None = None


class Resources(_Part):
    """CPU and memory amounts: requests, limits, allocatable or capacity."""

    cpu_cores: Rate | None = None
    memory_bytes: Bytes | None = None


class _Usage(_Part):
    """CPU and memory use shared by nodes, pods and containers.

    ``cpu_cores`` is the rate of ``usageCoreNanoSeconds`` between two scrapes
    (not kubelet's own ``usageNanoCores``, which is a sample of a sample).
    """

    cpu_cores: Rate | None = None
    cpu_usage_seconds_total: Rate | None = None
    memory_working_set_bytes: Bytes | None = None
    memory_rss_bytes: Bytes | None = None
    memory_usage_bytes: Bytes | None = None
    memory_available_bytes: Bytes | None = None
    memory_page_faults_total: Count | None = None
    memory_major_page_faults_total: Count | None = None


class _Utilisation(_Part):
    """Usage as a share of request, of limit and of node allocatable.

    With no limit set, the limit share is None: never a silent fallback to the
    node (that is what ``*_node_share`` is for).
    """

    cpu_request_share: Share | None = None
    cpu_limit_share: Share | None = None
    cpu_node_share: Share | None = None
    memory_request_share: Share | None = None
    memory_limit_share: Share | None = None
    memory_node_share: Share | None = None


class ContainerSample(_Usage, _Utilisation):
    """One container in one scrape."""

    name: Label
    requests: Resources = Field(default_factory=Resources)
    limits: Resources = Field(default_factory=Resources)
    rootfs: Filesystem | None = None
    logs: Filesystem | None = None
    restart_count: Count | None = None
    last_terminated_reason: str | None = None
    """e.g. ``OOMKilled``, from the pod status, when the container restarted."""


class PodSample(_Usage, _Utilisation):
    """One pod in one scrape, joined with its spec (requests, limits, owner)."""

    namespace: Label
    name: Segment
    uid: str = ""
    workload_kind: str | None = None
    """Deployment, StatefulSet, DaemonSet, Job, CronJob (resolved via ReplicaSet/Job)."""
    workload_name: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    phase: str | None = None
    requests: Resources = Field(default_factory=Resources)
    limits: Resources = Field(default_factory=Resources)
    network: list[Interface] = Field(default_factory=list)
    ephemeral_storage: Filesystem | None = None
    volumes: list[Volume] = Field(default_factory=list)
    containers: list[ContainerSample] = Field(default_factory=list)


class NodeSample(_Usage):
    """The node itself in one scrape, with its allocatable and capacity."""

    allocatable: Resources = Field(default_factory=Resources)
    capacity: Resources = Field(default_factory=Resources)
    cpu_node_share: Share | None = None
    memory_node_share: Share | None = None
    network: list[Interface] = Field(default_factory=list)
    fs: Filesystem | None = None
    imagefs: Filesystem | None = None
    conditions: dict[str, str] = Field(default_factory=dict)
    """Node condition type to status, e.g. ``{"MemoryPressure": "True"}``."""


class NodeScrape(Record):
    """One scrape of one node: the node's, its pods' and containers' samples.

    Batching per node scrape is what makes the throughput budget reachable:
    the per-message cost is paid once per node, not once per sample.
    """

    cluster: Segment
    node: Segment
    timestamp: AwareDatetime
    source: Literal["summary", "metrics.k8s.io", "simulator"] = "summary"
    node_stats: NodeSample = Field(default_factory=NodeSample)
    pods: list[PodSample] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.node}"


# --------------------------------------------------------------------------
# Kubernetes Events (kubepulse.events.v1)
# --------------------------------------------------------------------------


class ObjectRef(_Part):
    kind: Name
    name: Name
    namespace: str | None = None
    uid: str | None = None
    field_path: str | None = None


class KubeEvent(Record):
    """One core/v1 Event as the API server reports it."""

    cluster: Segment
    uid: Name
    namespace: str
    name: Name
    reason: str
    type: str = "Normal"
    """``Normal`` or ``Warning`` (Kubernetes does not forbid others)."""
    message: str = ""
    count: Count = 1
    first_seen: AwareDatetime | None = None
    last_seen: AwareDatetime | None = None
    involved_object: ObjectRef
    source_component: str | None = None
    source_host: str | None = None
    resource_version: str = ""

    @property
    def key(self) -> str:
        ns = self.involved_object.namespace or self.namespace or "-"
        return f"{self.cluster}/{ns}/{self.involved_object.name}"

    @property
    def timestamp(self) -> datetime | None:
        return self.last_seen or self.first_seen


# --------------------------------------------------------------------------
# ResourceQuotas (kubepulse.quotas.v1)
# --------------------------------------------------------------------------

Quantity = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class QuotaScrape(Record):
    """One ResourceQuota of one namespace at one time: its hard limits and how much of each is used.

    ``hard`` and ``used`` are the quota's ``status.hard`` and ``status.used``
    (what the API server enforces), keyed by resource name as Kubernetes
    writes it (``requests.cpu``, ``limits.memory``, ``pods``,
    ``count/deployments.apps``, ``requests.storage``...). Quantities are plain
    numbers: cores for CPU, bytes for memory and storage, a count otherwise.
    A resource in ``hard`` with no ``used`` entry has not been counted yet.
    """

    cluster: Segment
    namespace: Label
    name: Segment
    timestamp: AwareDatetime
    source: Literal["kubernetes", "simulator"] = "kubernetes"
    hard: dict[Name, Quantity] = Field(default_factory=dict)
    used: dict[Name, Quantity] = Field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


# --------------------------------------------------------------------------
# HorizontalPodAutoscalers (kubepulse.autoscalers.v1)
# --------------------------------------------------------------------------


class AutoscalerMetric(_Part):
    """One metric an autoscaling/v2 HorizontalPodAutoscaler scales on (``spec.metrics[]``).

    ``type`` is the HPA's: ``Resource`` (the pods' CPU or memory against their requests), ``ContainerResource``
    (one container's), ``Pods``, ``Object`` or ``External``. For the first two, ``resource`` is ``cpu`` or
    ``memory`` and the target is ``target_average_utilization`` (percent of the request: what a request
    change moves) or ``target_average_value`` (cores or bytes per pod: no request in it).
    """

    type: Literal["Resource", "ContainerResource", "Pods", "Object", "External"]
    resource: str | None = None
    container: str | None = None
    target_type: Literal["Utilization", "AverageValue", "Value"] | None = None
    target_average_utilization: Annotated[int, Field(ge=1)] | None = None
    target_average_value: Quantity | None = None
    metric_name: str | None = None
    """The metric's name for Pods, Object and External metrics."""


class AutoscalerScrape(Record):
    """One HorizontalPodAutoscaler (autoscaling/v2) at one time: what it scales, on what, and within which bounds.

    Right-sizing reads it: a request an HPA compares utilization against is not cut (see the README,
    Capacity and right-sizing).
    """

    cluster: Segment
    namespace: Label
    name: Segment
    timestamp: AwareDatetime
    source: Literal["kubernetes", "simulator"] = "kubernetes"
    target_kind: Name
    """``spec.scaleTargetRef.kind``: Deployment, StatefulSet..."""
    target_name: Name
    min_replicas: Annotated[int, Field(ge=0)] = 1
    max_replicas: Annotated[int, Field(ge=1)]
    current_replicas: Count | None = None
    desired_replicas: Count | None = None
    metrics: list[AutoscalerMetric] = Field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/{self.name}"


# --------------------------------------------------------------------------
# Results (rollups, anomalies, alerts)
# --------------------------------------------------------------------------

ENTITY_KINDS = ("node", "node_interface", "pod", "pod_interface", "container", "volume", "workload", "namespace",
                "cluster")
"""What an :class:`EntityRollup` can be about: the entities of a node scrape, and the cluster-wide sums."""
EntityKind = Literal["node", "node_interface", "pod", "pod_interface", "container", "volume", "workload",
                     "namespace", "cluster"]


class MetricStats(_Part):
    """Aggregates of one metric of one entity over one window: what a dashboard or a capacity model reads."""

    min: Finite
    max: Finite
    mean: Finite
    last: Finite
    """The value of the newest sample in the window."""
    sum: Finite
    count: Annotated[int, Field(ge=1)]
    """Samples (scrapes) aggregated; for a cluster-wide sum, the node partials summed (see EntityRollup)."""

    @model_validator(mode="after")
    def _ordered(self) -> MetricStats:
        # Float summation may put the mean a hair outside [min, max]; a reversed range or a mean far
        # outside it is a bug upstream.
        slack = 1e-9 * max(1.0, abs(self.min), abs(self.max))
        if self.min > self.max or not self.min - slack <= self.mean <= self.max + slack:
            raise ValueError("expected min <= mean <= max")
        return self


class EntityRollup(Record):
    """Every windowed metric of one entity over one tumbling window (kubepulse.rollups.v2).

    One record per entity and window, not one per series: a container's 1-minute
    window is one record with ``metrics = {"container.cpu_cores": {...},
    "container.memory_working_set_bytes": {...}, ...}``. ``window`` is ``1m``
    (dashboards, recent history, 14 days by default) or ``1h`` (long history,
    capacity planning and right-sizing, 400 days by default); windows are
    aligned to the epoch (``[start, start + 60 s)``, ``[start, start + 3600 s)``).

    ``entity_id`` is the first four slots of the entity's series ids
    (``models.series``): ``cluster/namespace/pod/container``, with ``-`` for an
    empty slot, so ``entity_id + "/" + metric`` is a series id of
    kubepulse.anomalies.v1 and of rule labels. Cluster-wide entities:
    ``c/ns/workload:W/-`` (workload), ``c/ns/-/-`` (namespace), ``c/-/-/-``
    (cluster); their metrics are sums over the cluster's nodes (see
    ``streams.aggregates`` for what min/max/mean of a sum mean there).

    Metric names are those of ``models.series.METRICS`` (and of
    ``models.series.AGGREGATE_METRICS`` for the cluster-wide kinds), with the unit in the name.
    """

    schema_version: Literal[2] = 2
    entity_id: LongId
    kind: EntityKind
    cluster: Segment
    node: str | None = None
    namespace: str | None = None
    workload: str | None = None
    workload_kind: str | None = None
    pod: str | None = None
    container: str | None = None
    volume: str | None = None
    persistentvolumeclaim: str | None = None
    interface: str | None = None
    window: Literal["1m", "1h"]
    window_start: AwareDatetime
    window_end: AwareDatetime
    metrics: dict[Name, MetricStats] = Field(min_length=1)

    @property
    def key(self) -> str:
        return self.entity_id

    @model_validator(mode="after")
    def _window(self) -> EntityRollup:
        if self.window_end <= self.window_start:
            raise ValueError("window_end must be after window_start")
        return self


class Anomaly(Record):
    """A point whose anomaly score crossed the configured threshold."""

    series_id: LongId
    cluster: Segment
    node: str | None = None
    namespace: str | None = None
    workload: str | None = None
    pod: str | None = None
    container: str | None = None
    metric: Name
    timestamp: AwareDatetime
    value: Finite
    baseline: Finite | None = None
    score: Share
    threshold: Share
    detector: Name

    @property
    def key(self) -> str:
        return self.series_id


class AlertTransition(Record):
    """A change of an alert's state, in Alertmanager's vocabulary.

    ``fingerprint`` is the FNV-64a hash of the sorted labels (Alertmanager's
    own), and PagerDuty's ``dedup_key``. ``sequence`` counts the transitions
    of one fingerprint, so a consumer can drop a repeat after a replay.
    """

    fingerprint: Annotated[str, Field(pattern=r"^[0-9a-f]{16}$")]
    status: Literal["firing", "resolved"]
    labels: dict[str, str]
    annotations: dict[str, str] = Field(default_factory=dict)
    starts_at: AwareDatetime
    ends_at: AwareDatetime | None = None
    rule: Name
    value: Finite | None = None
    threshold: Finite | None = None
    sequence: Annotated[int, Field(ge=1)] = 1
    generator_url: str | None = None

    @property
    def key(self) -> str:
        return self.fingerprint

    @model_validator(mode="after")
    def _consistent(self) -> AlertTransition:
        if "alertname" not in self.labels:
            raise ValueError("labels must include alertname")
        expected = fingerprint(self.labels)
        if self.fingerprint != expected:
            raise ValueError(f"fingerprint {self.fingerprint} does not match labels (expected {expected})")
        if self.status == "resolved" and self.ends_at is None:
            raise ValueError("a resolved alert needs ends_at")
        return self


# --------------------------------------------------------------------------
# Operations: dead letters, incidents (ground truth), notifications
# --------------------------------------------------------------------------


class DeadLetter(Record):
    """A record that could not be decoded or processed, kept with the reason and, whenever it fits, all of its bytes.

    ``payload`` is the original message, whole, so ``kubepulse deadletter replay`` can send it back to
    ``source_topic``: as text when it is UTF-8, else ``base64``; one too big for a Kafka message (a dead
    letter stays under 900 KiB like every record) is gzip-compressed (``gzip+base64``: a node scrape
    compresses about tenfold). Only a message that does not fit even compressed is cut: ``truncated`` is
    true, ``payload`` holds its first 64 KiB as text, and ``payload_bytes`` and ``payload_sha256`` say what
    the whole was, so it can be found and checked elsewhere.
    """

    source_topic: Name
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    stage: Name
    """Where it failed: ``decode``, ``windows``, ``indexing``, ``notify:<receiver>``..."""
    reason: Annotated[str, Field(min_length=1, max_length=4000)]
    """Why, in words a person can act on (an Elasticsearch or validation error can be long)."""
    error_type: str = ""
    payload: str = ""
    """The original bytes, encoded as ``payload_encoding`` says, never with secrets."""
    payload_encoding: Literal["text", "base64", "gzip+base64"] = "text"
    """``text``: the bytes are this UTF-8 text; ``base64``: they were not UTF-8; ``gzip+base64``: gzip of them, in base64."""
    payload_bytes: Bytes | None = None
    """Size of the original message value in bytes (None: the message had no value, or it is unknown)."""
    payload_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    """SHA-256 of the original bytes (hex): what a replay or a search elsewhere checks the bytes against."""
    truncated: bool = False
    """True when ``payload`` is only the start of the message (it did not fit even compressed): not replayable."""
    occurred_at: AwareDatetime


class Incident(Record):
    """The ground truth of one incident injected by the simulated fleet."""

    incident_id: Name
    kind: Literal["cpu_spike", "memory_leak", "network_storm", "disk_fill", "crash_loop", "node_memory_pressure"]
    cluster: Segment
    node: str | None = None
    namespace: str | None = None
    pod: str | None = None
    container: str | None = None
    metrics: list[str] = Field(default_factory=list)
    """The metrics the incident changes, as named in series ids."""
    start: AwareDatetime
    end: AwareDatetime
    seed: int | None = None

    @property
    def key(self) -> str:
        return self.cluster


class Notification(Record):
    """One delivery attempt of a notification to a receiver, and its outcome."""

    notification_id: Name
    receiver: Name
    integration: Literal["pagerduty", "slack", "email", "webhook", "console", "kafka"]
    group_key: str
    fingerprints: list[str]
    status: Literal["firing", "resolved"]
    attempt: Annotated[int, Field(ge=1)]
    outcome: Literal["sent", "retry", "failed", "suppressed"]
    error: str | None = None
    http_status: int | None = None
    at: AwareDatetime

    @property
    def key(self) -> str:
        return self.group_key


class Silence(Record):
    """A silence: firing alerts matching every matcher are not notified from ``starts_at`` to ``ends_at``.

    Matchers use Alertmanager's syntax (``name="v"``, ``name!="v"``,
    ``name=~"re"``, ``name!~"re"``). Expiring a silence republishes it with
    ``ends_at`` set to now; the topic is compacted on ``silence_id``, so every
    worker that reads it from the start sees each silence's latest version.
    """

    silence_id: Name
    matchers: list[Annotated[str, Field(min_length=3)]] = Field(min_length=1)
    starts_at: AwareDatetime
    ends_at: AwareDatetime
    created_by: Name
    comment: str = ""
    updated_at: AwareDatetime

    @property
    def key(self) -> str:
        return self.silence_id

    @model_validator(mode="after")
    def _ordered(self) -> Silence:
        if self.ends_at < self.starts_at:
            raise ValueError("ends_at must not be before starts_at")
        return self


class GroupDelivery(_Part):
    """What one integration of a receiver was last sent for an alert group."""

    firing: dict[str, int] = Field(default_factory=dict)
    """Fingerprint to the transition sequence delivered as firing."""
    resolved: dict[str, int] = Field(default_factory=dict)
    """Fingerprint to the transition sequence delivered as resolved."""
    at: AwareDatetime | None = None
    ref: str | None = None
    """The receiver's handle on the message (Slack ``channel:ts``) so a later notification updates it."""


class AlertGroupState(Record):
    """The alert dispatcher's state of one alert group (internal, compacted topic).

    Written after every change and every delivery, before the alerts topic's
    offset is committed: a restarted dispatcher rebuilds its groups from here
    and never re-sends what ``delivered`` records.
    """

    group_key: Name
    receiver: Name
    group_labels: dict[str, str] = Field(default_factory=dict)
    alerts: list[AlertTransition] = Field(default_factory=list)
    delivered: dict[str, GroupDelivery] = Field(default_factory=dict)
    """Integration id (``pagerduty/0``, ``slack/1``...) to what it was sent."""
    updated_at: AwareDatetime

    @property
    def key(self) -> str:
        return f"{self.receiver}|{self.group_key}"


# --------------------------------------------------------------------------
# Reports (kubepulse report run): the capacity and right-sizing indices
# --------------------------------------------------------------------------

Resource = Literal["cpu_requests", "memory_requests", "memory_working_set", "filesystem", "cpu_use"]


class CapacityForecast(Record):
    """When one resource of one node, namespace, cluster or volume reaches its limit, from the hourly rollups.

    Written by ``kubepulse report run`` (one per entity, resource and day: a rerun the same day replaces it),
    not on a topic. ``limit`` is what the resource reaches: a node's or the cluster's allocatable, a
    namespace's ResourceQuota (``requests.cpu``, ``requests.memory``, ``limits.memory``), a filesystem's
    capacity. ``days_to_full`` is when the fitted daily peak (trend plus the daily profile's highest hour)
    reaches it, ``days_to_full_low``/``_high`` the interval (``interval`` coverage) from the trend's
    uncertainty; None where it is not reached within ``horizon_days`` (``days_to_full_high`` None: the
    slow end of the interval is beyond the horizon). 0 when the limit is already reached. ``idle`` is the
    limit minus the p95 of the hourly use: what is there but not used in 95 % of hours.
    """

    cluster: Segment
    entity_kind: Literal["node", "namespace", "cluster", "volume"]
    entity_id: LongId
    node: str | None = None
    namespace: str | None = None
    volume: str | None = None
    persistentvolumeclaim: str | None = None
    resource: Resource
    unit: Literal["cores", "bytes"]
    limit_kind: Literal["allocatable", "quota", "capacity"] | None = None
    limit_name: str | None = None
    """The quota resource (``requests.cpu``...) and ResourceQuota for a namespace, else None."""
    limit: Finite | None = None
    current: Finite
    """The newest hour's mean."""
    p95: Finite
    """95th percentile of the hourly means over the history."""
    peak: Finite
    """The highest hourly maximum over the history."""
    idle: Finite | None = None
    used_share: Finite | None = None
    """``current / limit``."""
    growth_per_day: Finite
    """The trend's change per day in the unit, at the newest hour."""
    model: Literal["linear", "exponential", "flat"]
    """Which trend fitted better (``flat``: too little history or no variation for a trend)."""
    days_to_full: Annotated[float, Field(ge=0)] | None = None
    days_to_full_low: Annotated[float, Field(ge=0)] | None = None
    days_to_full_high: Annotated[float, Field(ge=0)] | None = None
    full_at: AwareDatetime | None = None
    interval: Annotated[float, Field(gt=0, lt=1)]
    horizon_days: Annotated[float, Field(gt=0)]
    history_hours: Count
    history_start: AwareDatetime
    history_end: AwareDatetime
    generated_at: AwareDatetime

    @property
    def key(self) -> str:
        return f"{self.entity_id}/{self.resource}"


class Recommendation(Record):
    """Recommended requests and limits of one container of one workload, from its last days of hourly rollups.

    Written by ``kubepulse report run`` (one per workload, container and day). CPU in cores, memory in
    bytes; ``current_*`` are the requests and limits the containers have now (None: not set), ``waste_*``
    the current request minus the recommended one (negative: under-requested). ``confidence`` (0..1) grows
    with the hours of history, up to the whole ``history_days``. ``hpa`` names the HorizontalPodAutoscaler
    that scales the workload; ``held`` lists the resources whose request is kept because that HPA compares
    its utilization against them (a cut would raise the utilization it sees and scale the workload out).
    """

    cluster: Segment
    namespace: Label
    workload: Segment
    workload_kind: str | None = None
    container: Label
    pods: Count
    """Distinct pods (replicas over time) the history covers."""
    cpu_p95: Finite
    cpu_p99: Finite
    cpu_max: Finite
    memory_p95: Finite
    memory_p99: Finite
    memory_max: Finite
    current_cpu_request: Finite | None = None
    current_cpu_limit: Finite | None = None
    current_memory_request: Finite | None = None
    current_memory_limit: Finite | None = None
    cpu_request: Finite
    cpu_limit: Finite | None = None
    memory_request: Finite
    memory_limit: Finite
    waste_cpu_cores: Finite | None = None
    waste_memory_bytes: Finite | None = None
    """Per replica; the workload's waste is this times its replicas (``replicas``)."""
    replicas: Annotated[float, Field(ge=0)]
    """Average replicas over the newest day of the history."""
    hpa: str | None = None
    held: list[Literal["cpu", "memory"]] = Field(default_factory=list)
    confidence: Annotated[float, Field(ge=0, le=1)]
    history_hours: Count
    history_start: AwareDatetime
    history_end: AwareDatetime
    generated_at: AwareDatetime

    @property
    def key(self) -> str:
        return f"{self.cluster}/{self.namespace}/workload:{self.workload}/{self.container}"


RECORD_TYPES: dict[str, type[Record]] = {
    "metrics": NodeScrape,
    "events": KubeEvent,
    "quotas": QuotaScrape,
    "autoscalers": AutoscalerScrape,
    "rollups": EntityRollup,
    "anomalies": Anomaly,
    "alerts": AlertTransition,
    "deadletter": DeadLetter,
    "incidents": Incident,
    "notifications": Notification,
    "silences": Silence,
    "alertgroups": AlertGroupState,
}
"""Record kind (the topic's middle name and the index kind) to its class."""


REPORT_TYPES: dict[str, type[Record]] = {"capacity": CapacityForecast, "recommendations": Recommendation}
"""Records that are written to Elasticsearch by ``kubepulse report run`` and to no topic: index kind to class."""
