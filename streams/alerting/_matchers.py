"""Alertmanager label matchers for routes, inhibitions and silences (the parser is ``streams._matchers``)."""

from __future__ import annotations

from streams._matchers import Matcher, matches_all
from streams._matchers import parse_matcher as _parse_matcher
from streams.alerting.errors import MatcherError

__all__ = ["Matcher", "parse_matcher", "matches_all"]


def parse_matcher(text: str) -> Matcher:
    """Parse one matcher, raising the alerting config's :class:`MatcherError`.

    >>> parse_matcher('namespace=~"prod-.*"').matches({"namespace": "prod-eu"})
    True
    >>> parse_matcher('severity!="info"').matches({})
    True
    >>> parse_matcher("severity")
    Traceback (most recent call last):
    ...
    streams.alerting.errors.MatcherError: 'severity' is not a matcher: expected name="value", name!="value", name=~"regex" or name!~"regex"
    """
    try:
        return _parse_matcher(text)
    except ValueError as exc:
        raise MatcherError(str(exc)) from exc
