"""The alerting configuration: Alertmanager's route tree, receivers and inhibit rules, loaded from YAML.

The file named by ``Settings.alerting.config_file`` reads like an
Alertmanager config, so people who know one know the other::

    route:
      receiver: slack
      group_by: [alertname, cluster, namespace, workload]
      group_wait: 30s
      group_interval: 5m
      repeat_interval: 4h
      routes:
        - matchers: ['severity="critical"']
          receiver: pager
          continue: true
    receivers:
      - name: pager
        pagerduty_configs: [{}]          # routing key from KUBEPULSE_ALERTING__PAGERDUTY_ROUTING_KEY
      - name: slack
        slack_configs: [{channel: "#alerts"}]
        rate_limit: {per_second: 1, burst: 10}
    inhibit_rules:
      - source_matchers: ['alertname="NodeMemoryPressure"']
        target_matchers: ['severity="warning"']
        equal: [cluster, node]

Secrets (routing keys, webhook URLs, tokens, SMTP passwords) are ``SecretStr``
and are given one of three ways: inline (discouraged), ``<field>_env`` naming
an environment variable, or ``<field>_file`` naming a file (a mounted
Kubernetes Secret). Left out, they fall back to ``Settings.alerting.*``.
Durations take Alertmanager's form (``30s``, ``5m``, ``1h30m``) or seconds
as a number (``0.2``), which is what the tests use.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    SecretStr,
    ValidationError,
    model_validator,
)

from models.settings import Settings
from streams._durations import duration_seconds
from streams.alerting._matchers import Matcher, parse_matcher
from streams.alerting.errors import AlertingConfigError, MatcherError

__all__ = [
    "AlertingConfig",
    "Route",
    "Receiver",
    "InhibitRule",
    "RateLimit",
    "RetryPolicy",
    "PagerDutyConfig",
    "SlackConfig",
    "EmailConfig",
    "WebhookConfig",
    "ConsoleConfig",
    "KafkaConfig",
    "load_config",
    "default_config",
    "parse_duration",
]

def parse_duration(value: Any) -> float:
    """Seconds from an Alertmanager duration or a number.

    >>> parse_duration("1h30m"), parse_duration("0.25s"), parse_duration(2)
    (5400.0, 0.25, 2.0)
    """
    if isinstance(value, bool):
        raise ValueError("a duration is a number of seconds or a string like 30s, 5m, 4h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        seconds = duration_seconds(value, fractional_seconds=True)
        if seconds is not None:
            return seconds
    raise ValueError(f"{value!r} is not a duration (e.g. 30s, 5m, 1h30m, or seconds as a number)")


Duration = Annotated[float, BeforeValidator(parse_duration)]


def _to_matcher(value: Any) -> Matcher:
    if isinstance(value, Matcher):
        return value
    if not isinstance(value, str):
        raise ValueError('a matcher is a string like severity="critical"')
    try:
        return parse_matcher(value)
    except MatcherError as exc:
        raise ValueError(str(exc)) from exc


MatcherField = Annotated[Matcher, BeforeValidator(_to_matcher), PlainSerializer(str, return_type=str)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)


class RateLimit(_Model):
    """A token bucket per receiver: a flood of groups does not get the receiver's integration banned."""

    per_second: float = Field(gt=0)
    burst: int = Field(1, ge=1)


class RetryPolicy(_Model):
    """Retries of one notification: exponential backoff with full jitter, then the dead-letter topic."""

    max_attempts: int = Field(40, ge=1)
    """Attempts before the dead-letter topic. 40 so that ``budget`` decides: backoff waits a uniform share of
    at most ``max_backoff``, so 8 attempts (the former default) waited ~30 s in all and lost the page to a
    one-minute PagerDuty outage (bench/chaos.py); 40 take ~8 minutes on average, past the 5-minute budget."""
    initial_backoff: Duration = 0.5
    max_backoff: Duration = 30.0
    budget: Duration = 300.0
    """Give up (dead-letter) once this long has passed since the first attempt."""
    max_retry_after: Duration = 300.0
    """Ceiling on a server's ``Retry-After`` (a misbehaving server cannot stall a group forever)."""
    timeout: Duration = 10.0
    """Per-request timeout."""


class _Integration(_Model):
    send_resolved: bool = True


class PagerDutyConfig(_Integration):
    """PagerDuty Events API v2: one event per alert, ``dedup_key`` = the alert's fingerprint."""

    routing_key: SecretStr | None = None
    routing_key_env: str | None = None
    routing_key_file: Path | None = None
    url: str = "https://events.pagerduty.com"
    """Base URL of the Events API; must be https (the pagerduty client insists). Tests point it at a local fake."""
    ca_file: Path | None = None
    """CA bundle to trust for ``url`` (a TLS-intercepting proxy, or the tests' fake); default: the system's."""
    source: str | None = None
    """``payload.source``; default: the alert's pod, node, or cluster label."""
    client: str = "kubepulse"


class SlackConfig(_Integration):
    """Slack: an incoming webhook (``api_url``) or a bot token with ``channel`` (updates the message on resolve)."""

    api_url: SecretStr | None = None
    api_url_env: str | None = None
    api_url_file: Path | None = None
    token: SecretStr | None = None
    token_env: str | None = None
    token_file: Path | None = None
    channel: str | None = None
    base_url: str = "https://slack.com/api/"
    """Web API base URL (tests point it at a local fake)."""
    mode: Literal["auto", "webhook", "token"] = "auto"
    """``auto``: the token if one is set, else the webhook."""


class EmailConfig(_Integration):
    """Email through SMTP (aiosmtplib): an HTML and a plain-text part."""

    to: list[str] = Field(min_length=1)
    from_: str = Field("kubepulse@localhost", alias="from")
    smarthost: str = "localhost:25"
    """``host:port`` of the SMTP server."""
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_password_env: str | None = None
    auth_password_file: Path | None = None
    require_tls: bool = False
    """STARTTLS after connecting (port 587 style)."""
    tls: bool = False
    """Implicit TLS from the first byte (port 465 style)."""
    validate_certs: bool = True

    @model_validator(mode="after")
    def _tls(self) -> EmailConfig:
        if self.tls and self.require_tls:
            raise ValueError("choose tls (implicit, port 465) or require_tls (STARTTLS), not both")
        host, _, port = self.smarthost.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"smarthost {self.smarthost!r} is not host:port")
        return self


class WebhookConfig(_Integration):
    """A POST of Alertmanager's webhook JSON (version 4), so existing receivers work."""

    url: SecretStr | None = None
    url_env: str | None = None
    url_file: Path | None = None
    max_alerts: int = Field(0, ge=0)
    """Cap on alerts per message (0: no cap), as Alertmanager's ``max_alerts``."""


class ConsoleConfig(_Integration):
    """One line per notification on stdout, and JSON lines in ``file`` (default Settings.alerting.notifications_file)."""

    file: Path | None = None


class KafkaConfig(_Integration):
    """Alertmanager's webhook JSON written to a Kafka topic (the topic prefix is applied)."""

    topic: str = Field(min_length=1)


class Receiver(_Model):
    name: str = Field(min_length=1)
    pagerduty_configs: list[PagerDutyConfig] = Field(default_factory=list)
    slack_configs: list[SlackConfig] = Field(default_factory=list)
    email_configs: list[EmailConfig] = Field(default_factory=list)
    webhook_configs: list[WebhookConfig] = Field(default_factory=list)
    console_configs: list[ConsoleConfig] = Field(default_factory=list)
    kafka_configs: list[KafkaConfig] = Field(default_factory=list)
    rate_limit: RateLimit | None = None
    retry: RetryPolicy = Field(default_factory=RetryPolicy)

    def integrations(self) -> list[tuple[str, _Integration]]:
        """(integration id, config) pairs: ``pagerduty/0``, ``slack/0``... (ids key the delivery state)."""
        out: list[tuple[str, _Integration]] = []
        for kind in ("pagerduty", "slack", "email", "webhook", "console", "kafka"):
            for i, cfg in enumerate(getattr(self, f"{kind}_configs")):
                out.append((f"{kind}/{i}", cfg))
        return out


class Route(_Model):
    """A node of the route tree; unset fields are inherited from the parent."""

    receiver: str | None = None
    matchers: list[MatcherField] = Field(default_factory=list)
    group_by: list[str] | None = None
    """Labels that make a group; ``['...']`` groups by all labels (one alert per group)."""
    group_wait: Duration | None = None
    group_interval: Duration | None = None
    repeat_interval: Duration | None = None
    continue_: bool = Field(False, alias="continue")
    routes: list[Route] = Field(default_factory=list)


class InhibitRule(_Model):
    """While a source alert fires, target alerts with the same ``equal`` labels are muted."""

    source_matchers: list[MatcherField] = Field(min_length=1)
    target_matchers: list[MatcherField] = Field(min_length=1)
    equal: list[str] = Field(default_factory=list)


class GlobalConfig(_Model):
    external_url: str = "http://kubepulse"
    """``externalURL`` in webhook bodies."""
    kibana_url: str | None = None
    """Overrides Settings.alerting.kibana_url for links."""
    kibana_dashboard_id: str = "kubepulse-overview"
    """The saved dashboard the links open (provisioned by kibana/)."""


class AlertingConfig(_Model):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    route: Route
    receivers: list[Receiver] = Field(min_length=1)
    inhibit_rules: list[InhibitRule] = Field(default_factory=list)

    @model_validator(mode="after")
    def _consistent(self) -> AlertingConfig:
        names = [r.name for r in self.receivers]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"receiver names must be unique, repeated: {dup}")
        if not self.route.receiver:
            raise ValueError("the root route needs a receiver (the default for everything unmatched)")
        known = set(names)

        def walk(route: Route, path: str) -> None:
            if route.receiver and route.receiver not in known:
                raise ValueError(f"{path}: receiver {route.receiver!r} is not defined in receivers ({sorted(known)})")
            for i, child in enumerate(route.routes):
                walk(child, f"{path}.routes[{i}]")

        walk(self.route, "route")
        return self

    def receiver(self, name: str) -> Receiver:
        for r in self.receivers:
            if r.name == name:
                return r
        raise KeyError(name)

    def secrets(self) -> list[str]:
        """Every secret value in this config (the redactor removes them from any text we emit)."""
        out: list[str] = []
        for r in self.receivers:
            for _, cfg in r.integrations():
                for value in cfg.__dict__.values():
                    if isinstance(value, SecretStr) and value.get_secret_value():
                        out.append(value.get_secret_value())
        return out


def default_config() -> AlertingConfig:
    """No config file: every alert to the console receiver, one group per alert, no waiting."""
    return AlertingConfig.model_validate(
        {
            "route": {
                "receiver": "console",
                "group_by": ["..."],
                "group_wait": 0,
                "group_interval": "10s",
                "repeat_interval": "4h",
            },
            "receivers": [{"name": "console", "console_configs": [{}]}],
        }
    )


def _resolve(cfg: BaseModel, field: str, fallback: SecretStr | None, environ: Mapping[str, str], where: str) -> None:
    """Fill ``field`` from ``<field>_env``, ``<field>_file`` or the settings fallback."""
    if getattr(cfg, field) is not None:
        return
    env_name = getattr(cfg, f"{field}_env", None)
    file = getattr(cfg, f"{field}_file", None)
    if env_name:
        if env_name not in environ:
            raise AlertingConfigError(f"{where}.{field}_env: environment variable {env_name} is not set")
        setattr(cfg, field, SecretStr(environ[env_name].strip()))
    elif file:
        try:
            setattr(cfg, field, SecretStr(Path(file).read_text().strip()))
        except OSError as exc:
            raise AlertingConfigError(f"{where}.{field}_file: cannot read {file}: {exc.strerror}") from exc
    elif fallback is not None:
        setattr(cfg, field, fallback)


def _finish(config: AlertingConfig, settings: Settings, environ: Mapping[str, str]) -> AlertingConfig:
    a = settings.alerting
    for r in config.receivers:
        for i, pd in enumerate(r.pagerduty_configs):
            where = f"receivers[{r.name}].pagerduty_configs[{i}]"
            _resolve(pd, "routing_key", a.pagerduty_routing_key, environ, where)
            if pd.routing_key is None:
                raise AlertingConfigError(
                    f"{where}: no routing key; set routing_key_env/routing_key_file or KUBEPULSE_ALERTING__PAGERDUTY_ROUTING_KEY"
                )
        for i, sl in enumerate(r.slack_configs):
            where = f"receivers[{r.name}].slack_configs[{i}]"
            _resolve(sl, "api_url", a.slack_webhook_url, environ, where)
            _resolve(sl, "token", a.slack_token, environ, where)
            if sl.channel is None:
                sl.channel = a.slack_channel
            if sl.mode == "auto":
                sl.mode = "token" if sl.token is not None else "webhook"
            if sl.mode == "token" and (sl.token is None or not sl.channel):
                raise AlertingConfigError(
                    f"{where}: token mode needs token and channel (KUBEPULSE_ALERTING__SLACK_TOKEN, __SLACK_CHANNEL)"
                )
            if sl.mode == "webhook" and sl.api_url is None:
                raise AlertingConfigError(
                    f"{where}: needs api_url (an incoming webhook URL; KUBEPULSE_ALERTING__SLACK_WEBHOOK_URL) or a token"
                )
        for i, em in enumerate(r.email_configs):
            _resolve(em, "auth_password", a.smtp_password, environ, f"receivers[{r.name}].email_configs[{i}]")
        for i, wh in enumerate(r.webhook_configs):
            where = f"receivers[{r.name}].webhook_configs[{i}]"
            _resolve(wh, "url", None, environ, where)
            if wh.url is None:
                raise AlertingConfigError(f"{where}: needs url, url_env or url_file")
    if config.global_.kibana_url is None:
        config.global_.kibana_url = a.kibana_url
    return config


def _describe(err: ValidationError, source: str) -> str:
    lines = []
    for e in err.errors(include_url=False):
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"  {loc}: {e['msg']}")
    return f"invalid alerting config {source}:\n" + "\n".join(lines)


def load_config(
    settings: Settings, *, path: Path | None = None, environ: Mapping[str, str] | None = None
) -> AlertingConfig:
    """Load and check the alerting config, or raise :class:`AlertingConfigError` naming each problem.

    ``path`` defaults to ``settings.alerting.config_file``; none gives
    :func:`default_config`. ``environ`` is where ``*_env`` references are
    looked up (default: the process environment, the one other place that
    reads it, because Kubernetes Secrets usually arrive as variables).
    """
    path = path or settings.alerting.config_file
    env = os.environ if environ is None else environ
    if path is None:
        return _finish(default_config(), settings, env)
    try:
        data = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise AlertingConfigError(f"cannot read alerting config {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise AlertingConfigError(f"alerting config {path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise AlertingConfigError(f"alerting config {path} must be a mapping with route and receivers")
    return config_from_dict(data, settings=settings, environ=env, source=str(path))


def config_from_dict(
    data: Mapping[str, Any], *, settings: Settings, environ: Mapping[str, str] | None = None, source: str = "(dict)"
) -> AlertingConfig:
    """Validate a config given as a mapping (what the YAML file holds)."""
    try:
        config = AlertingConfig.model_validate(data)
    except ValidationError as exc:
        raise AlertingConfigError(_describe(exc, source)) from exc
    return _finish(config, settings, os.environ if environ is None else environ)
