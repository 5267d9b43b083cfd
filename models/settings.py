"""Settings: one pydantic-settings object per process, in groups.

Sources, highest priority first: keyword arguments, environment variables
(prefix ``KUBEPULSE_``, ``__`` between a group and its field, e.g.
``KUBEPULSE_KAFKA__BOOTSTRAP_SERVERS``), the YAML file named by
``KUBEPULSE_CONFIG`` (or ``--config``), then the defaults here.

Settings are passed explicitly to whatever needs them; nothing else in
kubepulse reads ``os.environ``. A wrong value fails at start with
:class:`ConfigError`, which names the field, what was wrong and how to fix it.
Secrets are ``SecretStr``: their repr and str are ``**********``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import (BaseModel, ConfigDict, Field, SecretStr, ValidationError, ValidationInfo, field_validator,
                      model_validator)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, YamlConfigSettingsSource

from models.errors import ConfigError
from models.records import ENTITY_KINDS

__all__ = [
    "Settings",
    "KafkaSettings",
    "ElasticsearchSettings",
    "ClusterSettings",
    "KubernetesSettings",
    "StreamsSettings",
    "AlertingSettings",
    "RetentionSettings",
    "SimulatorSettings",
    "load_settings",
]


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class KafkaSettings(_Group):
    """Where Kafka is and how to talk to it."""

    bootstrap_servers: str = "127.0.0.1:9092"
    """Comma-separated ``host:port`` list. The default is what ``deploy/local/stack`` starts."""
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    topic_partitions: int = Field(8, ge=1, le=1024)
    """Partitions for topics kubepulse creates: the ceiling on worker processes per group."""
    topic_replication: int = Field(1, ge=1)
    """1 suits the single local broker; use 3 on a real cluster."""
    consumer_group: str = "kubepulse-worker"
    topic_prefix: str = Field("", pattern=r"^[a-zA-Z0-9._-]*$")
    """Prepended to every topic name; tests and shared Kafka clusters use it to keep runs apart."""
    compression_type: Literal["zstd", "lz4", "gzip", "none"] = "zstd"
    """Producer compression of every topic kubepulse writes. zstd: JSON scrapes and rollups shrink 5-10x
    for little CPU (cramjam's codec), so what kubepulse writes follows what it reads; ``none`` only
    for a broker that cannot decompress (none in use today)."""

    @field_validator("bootstrap_servers")
    @classmethod
    def _hosts(cls, v: str) -> str:
        for hp in v.split(","):
            host, _, port = hp.strip().rpartition(":")
            if not host or not port.isdigit():
                raise ValueError(f"{hp!r} is not host:port (e.g. 127.0.0.1:9092)")
        return v

    @model_validator(mode="after")
    def _sasl(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL"):
            if not (self.sasl_mechanism and self.sasl_username and self.sasl_password):
                raise ValueError("SASL needs sasl_mechanism, sasl_username and sasl_password")
        return self

    def aiokafka_kwargs(self) -> dict[str, Any]:
        """Connection keyword arguments for aiokafka producers and consumers."""
        kw: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers, "security_protocol": self.security_protocol}
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            kw["ssl_context"] = create_ssl_context(
                cafile=str(self.ssl_cafile) if self.ssl_cafile else None,
                certfile=str(self.ssl_certfile) if self.ssl_certfile else None,
                keyfile=str(self.ssl_keyfile) if self.ssl_keyfile else None,
            )
        if self.security_protocol.startswith("SASL"):
            kw["sasl_mechanism"] = self.sasl_mechanism
            kw["sasl_plain_username"] = self.sasl_username
            kw["sasl_plain_password"] = self.sasl_password.get_secret_value() if self.sasl_password else None
        return kw

    def producer_kwargs(self, **overrides: Any) -> dict[str, Any]:
        """Keyword arguments for every aiokafka producer kubepulse runs: confirmed, idempotent, compressed.

        ``acks="all"`` and idempotence, so a retried batch is neither lost nor written twice; the
        configured compression. ``overrides`` (``linger_ms``, batch sizes...) win.

        >>> KafkaSettings().producer_kwargs(linger_ms=0)["compression_type"], KafkaSettings().producer_kwargs()["acks"]
        ('zstd', 'all')
        """
        kw = self.aiokafka_kwargs()
        kw.update(acks="all", enable_idempotence=True,
                  compression_type=None if self.compression_type == "none" else self.compression_type)
        kw.update(overrides)
        return kw


_DEFAULT_ROLLUPS: dict[str, list[str]] = {"1m": ["node", "node_interface", "namespace", "cluster"], "1h": list(ENTITY_KINDS)}


class ElasticsearchSettings(_Group):
    """Where Elasticsearch is, how to authenticate, and how to write."""

    url: str = "http://127.0.0.1:9200"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: Path | None = None
    verify_certs: bool = True
    index_prefix: str = "kubepulse"
    """Indices are ``<prefix>-<kind>-YYYY.MM.DD`` with an alias ``<prefix>-<kind>``."""
    bulk_max_docs: int = Field(2000, ge=1)
    """Documents per bulk request; 2,000 one-entity metrics docs is about 2 MB."""
    bulk_max_seconds: float = Field(1.0, gt=0)
    """Longest a document waits in a batch: bounds indexing latency."""
    request_timeout_s: float = Field(30.0, gt=0)
    buffer_max_bytes: int = Field(256 * 2**20, ge=2**20)
    """Most bytes of Kafka messages the indexer holds (the batch being indexed and the next one): when full
    it takes no more, its small Faust queue (64 messages) fills and Faust stops fetching those partitions
    until Elasticsearch takes the batch. 256 MiB, because the indexer pod's limit is 1 GiB: add the queue
    (64 messages of at most 1 MiB), one fetch per partition (1 MiB each) and the documents of two bulk
    requests in flight, and a long outage stays well under it. ``bulk_max_docs`` still caps a batch's count."""
    number_of_shards: int = Field(1, ge=1)
    number_of_replicas: int = Field(0, ge=0)
    """0 suits the single local node (yellow health otherwise); use 1+ on a real cluster."""
    ilm_policy: str | None = None
    """Name an existing ILM policy to attach to the templates; otherwise the janitor deletes old indices."""
    codec: Literal["best_compression", "default"] = "best_compression"
    """Stored-field compression of every index. ``best_compression`` (zstd on 8.x) keeps ``_source`` at about
    half the default's size for a few percent more CPU when segments are written and read."""
    rollups: dict[Literal["1m", "1h"], list[str]] = Field(default_factory=lambda: dict(_DEFAULT_ROLLUPS))
    """Which entity kinds of kubepulse.rollups.v2 are indexed, per window (every one is on the topic); a window
    left out keeps its default, ``[]`` indexes none of it.

    1 h for every kind: 24 documents per entity and day (0.4 % of its raw documents at a 15 s scrape), what
    capacity planning and right-sizing read for 400 days. 1 m only for the kinds that do not grow with the
    pods: a node and its interfaces, and the cluster-wide namespace and cluster sums (a node-minute of raw
    data is 4 scrapes x (node + pods + containers + volumes) documents). Pods, containers, volumes and
    workloads keep their raw documents for recent detail. See the README (Elasticsearch) for the numbers."""

    @field_validator("rollups")
    @classmethod
    def _rollup_kinds(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        for window, kinds in v.items():
            unknown = sorted(set(kinds) - set(ENTITY_KINDS))
            if unknown:
                raise ValueError(f"{window}: no entity kind {', '.join(unknown)}; known: {', '.join(ENTITY_KINDS)}")
        return {**_DEFAULT_ROLLUPS, **v}

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not v.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return v.rstrip("/")

    @model_validator(mode="after")
    def _auth(self) -> ElasticsearchSettings:
        if (self.username is None) != (self.password is None):
            raise ValueError("basic auth needs both username and password")
        if self.api_key and self.username:
            raise ValueError("choose api_key or username/password, not both")
        return self


class ClusterSettings(_Group):
    """One Kubernetes cluster to watch."""

    name: str = Field(min_length=1, pattern=r"^[a-zA-Z0-9][a-zA-Z0-9._-]*$")
    kubeconfig: Path | None = None
    context: str | None = None
    in_cluster: bool = False

    @model_validator(mode="after")
    def _source(self) -> ClusterSettings:
        if self.in_cluster and (self.kubeconfig or self.context):
            raise ValueError("in_cluster clusters take no kubeconfig or context")
        return self


class KubernetesSettings(_Group):
    """How the collector reads clusters."""

    interval_s: float = Field(15.0, ge=1)
    """Scrape interval. 15 s matches kubelet's default housekeeping and metrics-server."""
    jitter_s: float = Field(1.5, ge=0)
    """Random shift of each pass, so many collectors do not hit API servers in lockstep."""
    request_timeout_s: float = Field(10.0, gt=0)
    concurrency: int = Field(32, ge=1, le=1024)
    """Parallel node-proxy requests per cluster: high enough for 1,000 nodes in 15 s."""
    retry_max_s: float = Field(60.0, gt=0)
    """Ceiling of the backoff between retries of a failing cluster."""
    publish_timeout_s: float = Field(120.0, gt=0)
    """How long a record Kafka does not confirm is sent again (with backoff) before the pass gives it up.

    The pass waits meanwhile (no new scrapes pile up behind a broker that is gone); a scrape given up
    is counted in ``kubepulse_collector_records_lost_total`` and fails the pass, and an Event is
    offered again by the watch, never marked seen. 120 s rides out a broker restart or a leader
    election; eight passes at the 15 s interval is as stale as a metrics scrape is worth waiting for."""
    publish_buffer_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024)
    """Bytes of encoded records handed to Kafka and not yet confirmed, across all clusters.

    When it is full a pass waits for room (backpressure) instead of buffering more. 256 MiB holds a
    little more than one pass of 1,000 nodes of 110 pods (~200 KB a NodeScrape)."""


class StreamsSettings(_Group):
    """Windows, detector and rules in the worker."""

    window_grace_s: float = Field(30.0, ge=0)
    """How late (event time) a sample may arrive and still be folded into its window."""
    detector: str = "default"
    """The detector of every scored series: ``default`` (``seasonal_lik`` with the series' unit as its
    resolution, see ``streams.scoring.new_detector``) or a name of ``models.detectors.DETECTORS``."""
    anomaly_threshold: float = Field(6.0, gt=0)
    """Score above which a point is published as an anomaly (see the detector docs for the scale).

    6 suits the default: on the simulated fleet at a 15 s scrape it gave 2 anomaly records in 7,636
    healthy series-days over two seeds (budget: 1 per 1,000; at 5 it gives ~22) and found nearly every
    CPU spike, network storm and node memory pressure within 5 scrapes, but few slow memory leaks
    (``python bench/detector.py --sim``, README "Anomaly detection"). The scale is standard deviations of
    the recent surprise, so it carries across series; NAB's cost profiles are optimal near 2.5 (a
    benchmark that charges a missed anomaly far more than a page at night); use about 6 with
    ``seasonal_z`` too."""
    rules_files: list[Path] = Field(default_factory=list)
    """Rule files; empty means the default rule pack shipped with kubepulse."""
    use_default_rules: bool = True
    rules_stale_after_s: float = Field(300.0, gt=0)
    """A series silent this long resolves its alerts (Prometheus' 5-minute staleness; > 2 scrape intervals).

    Also how long a whole node may be silent, in its partition's event time, before the worker
    closes its windows and ticks its rules without it (see ``streams/app.py``)."""
    node_state_ttl_s: float = Field(86400.0, gt=0)
    """A node (or an Event's object) silent this long is forgotten: its state is deleted from the
    table, so nodes replaced by an autoscaler do not accumulate. One that comes back starts afresh
    (its detectors learn again). Must be longer than ``rules_stale_after_s``."""
    scored_metrics: list[str] = Field(
        default_factory=lambda: [
            "cpu_cores",
            "memory_working_set_bytes",
            "rx_bytes_per_s",
            "tx_bytes_per_s",
            "rx_errors_per_s",
            "tx_errors_per_s",
            "volume.used_share",
            "memory_node_share",
        ]
    )
    """Metrics that get an anomaly detector: a full name (``pod.cpu_cores``) or a field name matching
    every entity (``cpu_cores``). Counters (``*_total``) and capacities are pointless to score, and so
    are the container writable layer's, the pod's ephemeral and the node's image filesystem shares:
    logs grow and rotate there all day (a healthy sawtooth), and predicted-exhaustion rules watch them."""
    windowed_metrics: list[str] = Field(
        default_factory=lambda: [
            "cpu_cores",
            "memory_working_set_bytes",
            "memory_available_bytes",
            "rx_bytes_per_s",
            "tx_bytes_per_s",
            "rx_errors_per_s",
            "tx_errors_per_s",
            "used_bytes",
            "used_share",
            "inodes_used_share",
            "cpu_request_cores",
            "cpu_limit_cores",
            "memory_request_bytes",
            "memory_limit_bytes",
        ]
    )
    """Metrics that get 1m and 1h windows on kubepulse.rollups.v2, named as in ``scored_metrics`` (the node's
    sums of its pods and its allocatable, and the workload, namespace and cluster sums, always do). Use,
    rates, used space, and each container's requests and limits (what it asked for when: right-sizing and
    history read them; constant within a window, they compress to almost nothing). Left to the raw metrics
    index: counters (their rates are windowed), capacities, near-duplicates (RSS, usage, inodes used), and
    the shares of request, limit and node allocatable, which are a windowed use over a constant of the
    window (``container.cpu_request_share`` is ``container.cpu_cores`` over ``container.cpu_request_cores``):
    windowing them again would double what rollups cost for nothing new. Add them here
    (``cpu_request_share``...) to have them anyway."""
    checkpoint_interval_s: float = Field(60.0, gt=0)
    """How often (wall-clock seconds, each key on its own phase) a worker writes the state of a key that
    changed (a node, an Event's object, a quota, a cluster's sums) to its table's changelog, and only then
    acks the input it includes. A restart replays at most about this much input. 60 s writes a node's
    state once per 4 scrapes, so changelog bytes stay below the input's; a shorter interval shortens the
    replay after a crash but writes more."""
    write_failure_timeout_s: float = Field(120.0, gt=0)
    """How long writes (outputs, changelog) may go unconfirmed, retried with backoff, before the worker
    exits non-zero for its orchestrator to restart it. Meanwhile nothing is acked and /readyz is false."""
    max_clock_skew_s: float = Field(120.0, gt=0)
    """How far ahead of the time Kafka received it (the collector's clock) a scrape's own timestamp may be.
    A scrape stamped later is processed at receive time plus this (and counted): a node whose clock runs
    fast can neither make its partition's other nodes look silent nor push its own windows far ahead; the
    raw document keeps the node's own timestamp."""
    processing_guarantee: Literal["at_least_once"] = "at_least_once"
    """Only ``at_least_once``: the worker confirms its own writes before it acks input and makes replays
    harmless (state records the offset it includes, outputs are idempotent, alert transitions carry a
    sequence), so Kafka transactions would add latency without covering more (see streams/_runtime.py)."""
    dispatch_alerts: bool = True
    """Run the alert dispatcher (routes, grouping, receivers of ``alerting``) inside each worker; off when
    ``kubepulse alerting run`` runs it as its own process. One worker of the group dispatches at a time."""
    cluster_aggregates: bool = True
    """Also sum the per-node partial rollups into cluster-wide workload, namespace and cluster rollups
    (``streams/aggregates.py``): a few records per node and window through an internal topic."""

    @field_validator("node_state_ttl_s")
    @classmethod
    def _ttl(cls, v: float, info: ValidationInfo) -> float:
        stale = info.data.get("rules_stale_after_s")
        if stale is not None and v <= stale:
            raise ValueError(f"must be longer than streams.rules_stale_after_s ({stale:g} s): a node's alerts "
                             "go stale before its state is forgotten")
        return v


class AlertingSettings(_Group):
    """Receivers, routes, inhibitions; the schema is checked by streams.alerting when it loads."""

    config_file: Path | None = None
    """Alertmanager-style YAML (route, receivers, inhibit_rules); none means the console receiver."""
    notifications_file: Path | None = None
    """Where the console receiver also appends JSON lines (the demo reads it)."""
    pagerduty_routing_key: SecretStr | None = None
    slack_webhook_url: SecretStr | None = None
    slack_token: SecretStr | None = None
    slack_channel: str | None = None
    smtp_password: SecretStr | None = None
    kibana_url: str | None = None
    """Base URL for links in notifications (dashboards, Discover)."""


class RetentionSettings(_Group):
    """Days to keep each index kind (the janitor deletes older daily indices)."""

    metrics_days: int = Field(7, ge=1)
    events_days: int = Field(30, ge=1)
    quotas_days: int = Field(30, ge=1)
    """ResourceQuota documents (a few per namespace per scrape): a month of capacity history."""
    autoscalers_days: int = Field(30, ge=1)
    """HorizontalPodAutoscaler documents (one per HPA and day): what right-sizing reads of the last days."""
    capacity_days: int = Field(400, ge=1)
    """Capacity forecasts (one per entity, resource and day of ``kubepulse report run``): as long as the
    hourly rollups, so a forecast can be checked against what happened."""
    recommendations_days: int = Field(400, ge=1)
    """Right-sizing recommendations (one per workload, container and day)."""
    rollups_1m_days: int = Field(14, ge=1)
    """1-minute rollups: two weeks of minute-level history for dashboards."""
    rollups_1h_days: int = Field(400, ge=1)
    """1-hour rollups: a year and a month, so capacity planning sees last year's same season."""
    anomalies_days: int = Field(90, ge=1)
    alerts_days: int = Field(365, ge=1)
    notifications_days: int = Field(365, ge=1)
    deadletter_days: int = Field(30, ge=1)
    incidents_days: int = Field(90, ge=1)
    """Injected incidents (the simulator's ground truth) live as long as the anomalies they explain."""


class SimulatorSettings(_Group):
    clusters: int = Field(3, ge=1)
    nodes_per_cluster: int = Field(8, ge=1)
    pods_per_node: int = Field(10, ge=1)
    seed: int = 42
    interval_s: float = Field(15.0, gt=0)
    incident_every_s: float = Field(180.0, gt=0)
    labels_file: Path | None = None
    diurnal_period_s: float = Field(86400.0, gt=0)
    """Period of the simulated daily load cycle (simulated seconds); shorten it for accelerated demos."""


class Settings(BaseSettings):
    """Everything one kubepulse process is configured with."""

    model_config = SettingsConfigDict(
        env_prefix="KUBEPULSE_",
        env_nested_delimiter="__",
        extra="forbid",
        validate_default=True,
    )

    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    elasticsearch: ElasticsearchSettings = Field(default_factory=ElasticsearchSettings)
    clusters: list[ClusterSettings] = Field(default_factory=list)
    """Clusters to watch, e.g. ``KUBEPULSE_CLUSTERS='[{"name":"prod","context":"prod"}]'``."""
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    alerting: AlertingSettings = Field(default_factory=AlertingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    simulator: SimulatorSettings = Field(default_factory=SimulatorSettings)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    http_port: int = Field(8000, ge=0, le=65535)
    """Port of /healthz, /readyz and /metrics; 0 disables the server."""

    @field_validator("clusters")
    @classmethod
    def _unique(cls, v: list[ClusterSettings]) -> list[ClusterSettings]:
        names = [c.name for c in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"cluster names must be unique, repeated: {sorted(dup)}")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        yaml_file = _CONFIG_FILE.get("path")
        if yaml_file:
            sources.append(YamlConfigSettingsSource(settings_cls, yaml_file=yaml_file))
        sources.append(file_secret_settings)
        return tuple(sources)


_CONFIG_FILE: dict[str, Path | None] = {}

_FIXES = {
    "kafka": "KUBEPULSE_KAFKA__{FIELD}",
    "elasticsearch": "KUBEPULSE_ELASTICSEARCH__{FIELD}",
    "kubernetes": "KUBEPULSE_KUBERNETES__{FIELD}",
    "streams": "KUBEPULSE_STREAMS__{FIELD}",
    "alerting": "KUBEPULSE_ALERTING__{FIELD}",
    "retention": "KUBEPULSE_RETENTION__{FIELD}",
    "simulator": "KUBEPULSE_SIMULATOR__{FIELD}",
}


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        field = ".".join(loc) or "(settings)"
        where = ""
        if loc and loc[0] in _FIXES and len(loc) > 1:
            where = f"; set {_FIXES[loc[0]].format(FIELD=loc[1].upper())} or `{loc[0]}: {{{loc[1]}: ...}}` in the YAML file"
        elif loc:
            where = f"; set KUBEPULSE_{loc[0].upper()} or `{loc[0]}:` in the YAML file"
        value = e.get("input")
        shown = "" if isinstance(value, dict | list) or "secret" in field or "password" in field or "key" in field else f" (got {value!r})"
        lines.append(f"  {field}: {e['msg']}{shown}{where}")
    return "invalid kubepulse settings:\n" + "\n".join(lines)


def load_settings(config_file: Path | str | None = None, **overrides: Any) -> Settings:
    """Build the settings, or raise :class:`ConfigError` naming each bad field and its fix.

    ``config_file`` defaults to ``$KUBEPULSE_CONFIG``; this is the one place
    that reads the environment (pydantic-settings reads the rest).
    """
    path = config_file or os.environ.get("KUBEPULSE_CONFIG") or None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist (set KUBEPULSE_CONFIG or --config to a YAML file)")
    _CONFIG_FILE["path"] = path
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from exc
    finally:
        _CONFIG_FILE.pop("path", None)
