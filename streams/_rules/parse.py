"""Rule files: YAML in, validated rules out, every error at its FILE:LINE:COLUMN.

PyYAML's ``compose`` keeps each node's position, so after pydantic validates
the plain data, each error's location (``groups.0.rules.2.threshold``) is
mapped back to the line and column of the offending key or value. Checks that
need kubepulse's knowledge (metric names, matchers, templates) run after, with
the same positions.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from models.series import METRICS
from streams._rules import spec
from streams._rules.errors import Problem, RulesError
from streams._matchers import Matcher, parse_matcher
from streams._rules.templates import Template, compile_template

__all__ = ["Rule", "parse_rules", "METRIC_KIND"]

METRIC_KIND: dict[str, str] = {m: kind for kind, names in METRICS.items() for m in names}
"""Metric name to the kind of entity that carries it."""

Spec = spec.ThresholdRule | spec.RateRule | spec.PredictRule | spec.EventRule | spec.AnomalyRule


@dataclass(frozen=True, slots=True)
class Rule:
    """One validated rule: its group, its spec, where it was defined, and its compiled parts."""

    group: str
    spec: Spec
    source: str
    """``FILE:LINE`` of the rule's ``alert:`` key."""
    matchers: tuple[Matcher, ...] = ()
    annotations: dict[str, Template] = field(default_factory=dict)

    @property
    def id(self) -> str:
        """``group/alert``; the engine appends ``/severity`` where a group defines an alert twice."""
        return f"{self.group}/{self.spec.alert}"

    @property
    def kind(self) -> str:
        return self.spec.kind

    @property
    def name(self) -> str:
        return self.spec.alert


Path_ = tuple[str | int, ...]


class _Marks:
    """Positions of every key and value of a composed YAML document, by data path."""

    def __init__(self) -> None:
        self.key: dict[Path_, yaml.Mark] = {}
        self.value: dict[Path_, yaml.Mark] = {}

    def at(self, path: Path_, *, prefer_key: bool = False) -> yaml.Mark:
        """The deepest known position along ``path`` (a missing field points at its parent)."""
        for n in range(len(path), -1, -1):
            p = path[:n]
            if prefer_key and p in self.key:
                return self.key[p]
            if p in self.value:
                return self.value[p]
        return self.value[()]


_constructor = yaml.SafeLoader("")


def _to_data(node: yaml.Node, path: Path_, marks: _Marks, problems: list[Problem], file: str) -> Any:
    marks.value[path] = node.start_mark
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for knode, vnode in node.value:
            key = _constructor.construct_object(knode, deep=True)
            if not isinstance(key, str):
                key = str(key)
            if key in out:
                m = knode.start_mark
                problems.append(Problem(file, m.line + 1, m.column + 1, _where(path), f"duplicate key {key!r}"))
                continue
            marks.key[(*path, key)] = knode.start_mark
            out[key] = _to_data(vnode, (*path, key), marks, problems, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_to_data(v, (*path, i), marks, problems, file) for i, v in enumerate(node.value)]
    return _constructor.construct_object(node, deep=True)


def _where(path: Path_) -> str:
    out = ""
    for p in path:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _pydantic_problems(err: ValidationError, marks: _Marks, file: str, *, prefix: Path_ = ()) -> list[Problem]:
    problems = []
    for e in err.errors():
        loc = (*prefix, *e["loc"])
        # Drop the discriminator tag pydantic inserts after a rule's index ("threshold", ...).
        path = [p for i, p in enumerate(loc) if not (i >= 2 and loc[i - 2] == "rules" and isinstance(loc[i - 1], int) and p in spec.KINDS)]
        if e["type"] == "missing":
            missing = path.pop()
            mark = marks.at(tuple(path))
            msg = f"missing required key {missing!r}"
            where = _where(tuple(path))
        elif e["type"] == "extra_forbidden":
            mark = marks.at(tuple(path), prefer_key=True)
            msg = f"unknown key {path[-1]!r}"
            where = _where(tuple(path[:-1]))
        elif e["type"] in ("union_tag_invalid", "union_tag_not_found"):
            mark = marks.at((*path, "kind"))
            got = e.get("ctx", {}).get("tag", "")
            msg = f"unknown kind {got!r} (expected one of: {', '.join(spec.KINDS)})"
            where = _where(tuple(path))
        else:
            mark = marks.at(tuple(path))
            msg = e["msg"].removeprefix("Value error, ")
            inp = e.get("input")
            if not isinstance(inp, dict | list):
                msg += f" (got {inp!r})"
            where = _where(tuple(path))
        problems.append(Problem(file, mark.line + 1, mark.column + 1, where, msg))
    return problems


def _check_metric(name: str, path: Path_, marks: _Marks, file: str, problems: list[Problem], *, kind: str | None = None) -> None:
    mark = marks.at(path)
    if name not in METRIC_KIND:
        close = difflib.get_close_matches(name, METRIC_KIND, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else " (see models/series.py METRICS)"
        problems.append(Problem(file, mark.line + 1, mark.column + 1, _where(path), f"unknown metric {name!r}{hint}"))
    elif kind is not None and METRIC_KIND[name] != kind:
        problems.append(
            Problem(file, mark.line + 1, mark.column + 1, _where(path), f"{name!r} is a {METRIC_KIND[name]} metric, not of the {kind} the rule selects")
        )


def _compile(group: str, idx: tuple[int, int], r: Spec, marks: _Marks, file: str, problems: list[Problem]) -> Rule | None:
    gi, ri = idx
    base: Path_ = ("groups", gi, "rules", ri)
    before = len(problems)
    kind = None
    if isinstance(r, spec.ThresholdRule | spec.PredictRule):
        _check_metric(r.metric, (*base, "metric"), marks, file, problems)
        kind = METRIC_KIND.get(r.metric)
        if isinstance(r, spec.PredictRule) and r.limit_metric is not None:
            _check_metric(r.limit_metric, (*base, "limit_metric"), marks, file, problems, kind=kind)
        if r.and_ is not None:
            _check_metric(r.and_.metric, (*base, "and", "metric"), marks, file, problems, kind=kind)
    elif isinstance(r, spec.AnomalyRule):
        for i, m in enumerate(r.metrics):
            _check_metric(m, (*base, "metrics", i), marks, file, problems)
    elif isinstance(r, spec.EventRule) and r.message is not None:
        try:
            re.compile(r.message)
        except re.error as exc:
            mark = marks.at((*base, "message"))
            problems.append(Problem(file, mark.line + 1, mark.column + 1, _where((*base, "message")), f"invalid regex: {exc}"))
    matchers = []
    for i, text in enumerate(r.matchers):
        try:
            matchers.append(parse_matcher(text))
        except ValueError as exc:
            mark = marks.at((*base, "matchers", i))
            problems.append(Problem(file, mark.line + 1, mark.column + 1, _where((*base, "matchers", i)), str(exc)))
    templates: dict[str, Template] = {}
    texts = dict(r.annotations)
    if r.runbook_url:
        texts.setdefault("runbook_url", r.runbook_url)
    for name, text in texts.items():
        try:
            templates[name] = compile_template(text)
        except ValueError as exc:
            p = (*base, "annotations", name) if name in r.annotations else (*base, "runbook_url")
            mark = marks.at(p)
            problems.append(Problem(file, mark.line + 1, mark.column + 1, _where(p), f"template: {exc}"))
    if len(problems) > before:
        return None
    mark = marks.at((*base, "alert"), prefer_key=True)
    return Rule(group, r, f"{file}:{mark.line + 1}", tuple(matchers), templates)


def parse_rules(text: str, *, file: str = "<string>") -> list[Rule]:
    """Parse and check a rule file's text; raise :class:`RulesError` listing every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        raise RulesError([Problem(file, line, col, "", f"not YAML: {exc.problem or exc}")]) from exc
    except yaml.YAMLError as exc:
        raise RulesError([Problem(file, 1, 1, "", f"not YAML: {exc}")]) from exc
    if node is None:
        raise RulesError([Problem(file, 1, 1, "", "empty rule file: expected `groups:`")])
    marks = _Marks()
    problems: list[Problem] = []
    data = _to_data(node, (), marks, problems, file)
    if isinstance(data, dict):
        for gi, g in enumerate(data.get("groups") or []):
            if isinstance(g, dict) and isinstance(g.get("rules"), list):
                for r in g["rules"]:
                    # `kind` defaults to threshold; the discriminated union needs it present.
                    if isinstance(r, dict) and "kind" not in r:
                        r["kind"] = "threshold"
    try:
        parsed = spec.RuleFile.model_validate(data)
    except ValidationError as exc:
        raise RulesError(problems + _pydantic_problems(exc, marks, file)) from exc
    rules: list[Rule] = []
    for gi, group in enumerate(parsed.groups):
        for ri, raw in enumerate(group.rules):
            try:
                r = spec.RULE.validate_python(raw)
            except ValidationError as exc:
                problems += _pydantic_problems(exc, marks, file, prefix=("groups", gi, "rules", ri))
                continue
            compiled = _compile(group.name, (gi, ri), r, marks, file, problems)
            if compiled is not None:
                rules.append(compiled)
    if problems:
        raise RulesError(problems)
    return rules


def load_file(path: Path | str) -> list[Rule]:
    """Read and parse one rule file (a missing file is a RulesError too)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise RulesError([Problem(str(p), 1, 1, "", f"cannot read rule file: {exc.strerror or exc}")]) from exc
    return parse_rules(text, file=str(p))
