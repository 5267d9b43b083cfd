"""Alertmanager label matchers: ``name="v"``, ``!=``, ``=~``, ``!~``; one parser for rule selectors and alert routes.

The same syntax as Alertmanager's ``matchers:``:
regexes are fully anchored, and a missing label matches as the empty string,
so ``container!="POD"`` matches an entity that has no container label.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Matcher", "parse_matcher", "matches_all"]

_MATCHER = re.compile(
    r"""^\s*(?P<name>[a-zA-Z_][a-zA-Z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^"\s]*)\s*$"""
)


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: str
    value: str
    regex: re.Pattern[str] | None = None

    def matches(self, labels: Mapping[str, str]) -> bool:
        got = labels.get(self.name, "")
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(got) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher, or raise ValueError saying what the syntax is.

    >>> parse_matcher('namespace=~"prod-.*"').matches({"namespace": "prod-eu"})
    True
    >>> parse_matcher('container!="POD"').matches({})
    True
    """
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f'{text!r} is not a matcher: expected name="value", name!="value", name=~"regex" or name!~"regex"')
    value = m["value"]
    if value.startswith('"'):
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    regex = None
    if m["op"] in ("=~", "!~"):
        try:
            regex = re.compile(value)
        except re.error as exc:
            raise ValueError(f"{text!r}: invalid regex: {exc}") from exc
    return Matcher(m["name"], m["op"], value, regex)


def matches_all(matchers: Iterable[Matcher], labels: Mapping[str, str]) -> bool:
    """True when every matcher matches (an empty list matches everything)."""
    return all(m.matches(labels) for m in matchers)
