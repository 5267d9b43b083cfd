"""Routing: which receivers and groups an alert belongs to, and which alerts inhibit which.

Alertmanager's semantics: the root route matches everything; children are
tried in order, the first match wins unless it has ``continue: true``; a route
whose children all miss takes the alert itself. A group is (route, values of
its ``group_by`` labels); its key reads like Alertmanager's
(``{}/{severity="critical"}:{cluster="eu", namespace="shop"}``).

A group key is bounded (:data:`GROUP_KEY_MAX` characters, a Kubernetes
name's length), because it is an identifier that travels: the state topic's
key ``receiver|group_key``, the notifications topic's key, an indexed
keyword, PagerDuty's ``custom_details``, Slack's fallback text, a webhook's
``groupKey``. A route that groups by every label (``group_by: ["..."]``, the
default route) makes Alertmanager's key as long as the alert's label set,
which for a container alert easily passes 253 characters. A key that would
be longer keeps a readable prefix and ends in a SHA-256 of the whole
Alertmanager-style key (``...#<32 hex>``): stable across restarts and
processes (the state topic is keyed by it), distinct for distinct groups
(128 bits), and a key that fits is unchanged, so stored state written before
stays valid. The full label values are never lost: they are the group's
``group_labels``, sent as the webhook's ``groupLabels``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
import hashlib
from dataclasses import dataclass

from streams.alerting._matchers import matches_all
from streams.alerting.config import AlertingConfig, InhibitRule, Route

__all__ = ["RouteMatch", "Router", "Inhibitor", "GROUP_KEY_MAX", "bounded_group_key"]

GROUP_KEY_MAX = 253
"""Longest group key (``models.records.AlertGroupState.group_key`` is a ``Name``)."""
_HASH_CHARS = 32

# Alertmanager's own defaults, for routes that set nothing anywhere up the tree.
_DEFAULT_GROUP_WAIT = 30.0
_DEFAULT_GROUP_INTERVAL = 300.0
_DEFAULT_REPEAT_INTERVAL = 4 * 3600.0


@dataclass(frozen=True, slots=True)
class _Effective:
    key: str
    receiver: str
    group_by: tuple[str, ...] | None
    group_wait: float
    group_interval: float
    repeat_interval: float


@dataclass(frozen=True, slots=True)
class RouteMatch:
    """Where one alert goes: the receiver, its group and the group's timings (seconds)."""

    route_key: str
    receiver: str
    group_key: str
    group_labels: dict[str, str]
    group_wait: float
    group_interval: float
    repeat_interval: float


def _label_set(labels: Mapping[str, str]) -> str:
    return "{" + ", ".join(f'{k}="{labels[k]}"' for k in sorted(labels)) + "}"


def bounded_group_key(full: str) -> str:
    """``full`` when it fits in :data:`GROUP_KEY_MAX` characters, else a readable prefix, ``...#`` and its SHA-256.

    >>> bounded_group_key('{}:{a="1"}')
    '{}:{a="1"}'
    >>> long = bounded_group_key("{}:{" + ", ".join(f'l{i}="{i}"' for i in range(100)) + "}")
    >>> len(long), long[:12], long[-36:-32]
    (253, '{}:{l0="0", ', '...#')
    """
    if len(full) <= GROUP_KEY_MAX:
        return full
    digest = hashlib.sha256(full.encode()).hexdigest()[:_HASH_CHARS]
    return f"{full[: GROUP_KEY_MAX - _HASH_CHARS - 4]}...#{digest}"


class Router:
    """Matches label sets against the route tree of one config."""

    def __init__(self, config: AlertingConfig) -> None:
        self._config = config

    def _root(self) -> _Effective:
        root = self._config.route
        return _Effective(
            "{}",
            root.receiver or "",
            tuple(root.group_by) if root.group_by is not None else None,
            root.group_wait if root.group_wait is not None else _DEFAULT_GROUP_WAIT,
            root.group_interval if root.group_interval is not None else _DEFAULT_GROUP_INTERVAL,
            root.repeat_interval if root.repeat_interval is not None else _DEFAULT_REPEAT_INTERVAL,
        )

    def match(self, labels: Mapping[str, str]) -> list[RouteMatch]:
        """The routes an alert with ``labels`` goes to (at least one: the root)."""
        out: list[_Effective] = []
        self._walk(self._config.route, self._root(), labels, out)
        return [self._result(e, labels) for e in out]

    def former(self, *, receiver: str, group_key: str, group_labels: Mapping[str, str]) -> RouteMatch:
        """A group no route makes any more (the config changed), with the root's timings: it only drains."""
        root = self._root()
        return RouteMatch(
            route_key="(former)",
            receiver=receiver,
            group_key=group_key,
            group_labels=dict(group_labels),
            group_wait=root.group_wait,
            group_interval=root.group_interval,
            repeat_interval=root.repeat_interval,
        )

    def _walk(self, route: Route, eff: _Effective, labels: Mapping[str, str], out: list[_Effective]) -> None:
        matched_child = False
        for i, child in enumerate(route.routes):
            if not matches_all(child.matchers, labels):
                continue
            child_eff = _Effective(
                f"{eff.key}/{{{','.join(str(m) for m in child.matchers)}}}[{i}]",
                child.receiver or eff.receiver,
                tuple(child.group_by) if child.group_by is not None else eff.group_by,
                child.group_wait if child.group_wait is not None else eff.group_wait,
                child.group_interval if child.group_interval is not None else eff.group_interval,
                child.repeat_interval if child.repeat_interval is not None else eff.repeat_interval,
            )
            self._walk(child, child_eff, labels, out)
            matched_child = True
            if not child.continue_:
                break
        if not matched_child:
            out.append(eff)

    @staticmethod
    def _result(eff: _Effective, labels: Mapping[str, str]) -> RouteMatch:
        if eff.group_by is None:
            group_labels: dict[str, str] = {}
        elif "..." in eff.group_by:
            group_labels = dict(labels)
        else:
            group_labels = {k: labels[k] for k in eff.group_by if k in labels}
        return RouteMatch(
            route_key=eff.key,
            receiver=eff.receiver,
            group_key=bounded_group_key(f"{eff.key}:{_label_set(group_labels)}"),
            group_labels=group_labels,
            group_wait=eff.group_wait,
            group_interval=eff.group_interval,
            repeat_interval=eff.repeat_interval,
        )


class Inhibitor:
    """Decides whether a firing alert is muted by another firing alert (Alertmanager's inhibit_rules).

    An alert that matches a rule's source and target matchers does not
    inhibit itself, as in Alertmanager.
    """

    def __init__(self, rules: Iterable[InhibitRule]) -> None:
        self._rules = list(rules)

    def inhibited(self, labels: Mapping[str, str], firing: Iterable[Mapping[str, str]]) -> bool:
        """True when some alert in ``firing`` (label sets of firing alerts) inhibits ``labels``."""
        if not self._rules:
            return False
        sources = list(firing)
        for rule in self._rules:
            if not matches_all(rule.target_matchers, labels):
                continue
            for src in sources:
                if src is labels or dict(src) == dict(labels):
                    continue
                if not matches_all(rule.source_matchers, src):
                    continue
                if all(src.get(name, "") == labels.get(name, "") for name in rule.equal):
                    return True
        return False
