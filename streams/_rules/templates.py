"""Annotation templates in Prometheus' syntax: ``{{ $labels.pod }}``, ``{{ $value | humanize }}``.

Prometheus' syntax was picked because people paste annotations from
kubernetes-mixin; the subset that alert annotations use is supported and
checked when the rule file loads (a typo is a load error with its line, not a
blank page at 3 am):

- ``$labels.NAME`` (an absent label renders as empty), ``$value``,
  ``$threshold`` (kubepulse's: the rule's threshold), ``$alertname``;
- pipes ``humanize``, ``humanize1024``, ``humanizePercentage``,
  ``humanizeDuration``, ``toUpper``, ``toLower``, ``title``, and
  ``printf "FORMAT"`` (``{{ printf "%.1f" $value }}`` or ``$value | printf "%.1f"``).

Control structures (``if``, ``with``, ``range``) are not supported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping

__all__ = ["Template", "compile_template", "humanize", "humanize1024", "humanize_percentage", "humanize_duration"]

_ACTION = re.compile(r"\{\{-?(.*?)-?\}\}", re.S)
_TOKEN = re.compile(r'\s*("(?:[^"\\]|\\.)*"|\||[^\s|"]+)')
_LABEL = re.compile(r"^\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)$")


def _fmt4g(v: float) -> str:
    return f"{v:.4g}"


def humanize(v: float) -> str:
    """SI-prefixed number, Prometheus' ``humanize``.

    >>> humanize(1234567.0), humanize(0.0025), humanize(12.0)
    ('1.235M', '2.5m', '12')
    """
    if v == 0 or math.isnan(v) or math.isinf(v):
        return _fmt4g(v)
    if abs(v) >= 1:
        for prefix in ("", "k", "M", "G", "T", "P", "E", "Z"):
            if abs(v) < 1000 or prefix == "Z":
                return _fmt4g(v) + prefix
            v /= 1000
    for prefix in ("", "m", "u", "n", "p", "f", "a", "z"):
        if abs(v) >= 1 or prefix == "z":
            return _fmt4g(v) + prefix
        v *= 1000
    return _fmt4g(v)  # pragma: no cover - the loops always return


def humanize1024(v: float) -> str:
    """Binary-prefixed number, Prometheus' ``humanize1024``.

    >>> humanize1024(2 * 1024**3)
    '2Gi'
    """
    if abs(v) < 1 or math.isnan(v) or math.isinf(v):
        return _fmt4g(v)
    for prefix in ("", "ki", "Mi", "Gi", "Ti", "Pi", "Ei", "Zi"):
        if abs(v) < 1024 or prefix == "Zi":
            return _fmt4g(v) + prefix
        v /= 1024
    return _fmt4g(v)  # pragma: no cover


def humanize_percentage(v: float) -> str:
    """``0.9234`` as ``92.34%``, Prometheus' ``humanizePercentage``.

    >>> humanize_percentage(0.9234)
    '92.34%'
    """
    return _fmt4g(v * 100) + "%"


def humanize_duration(v: float) -> str:
    """Seconds as ``1d 2h 3m 4s``, Prometheus' ``humanizeDuration``.

    >>> humanize_duration(3725), humanize_duration(0.25), humanize_duration(float("inf"))
    ('1h 2m 5s', '250ms', 'never')
    """
    if math.isinf(v) or math.isnan(v):
        return "never"
    if v == 0:
        return "0s"
    sign = "-" if v < 0 else ""
    v = abs(v)
    if v < 1:
        if v >= 1e-3:
            return f"{sign}{v * 1e3:.4g}ms"
        return f"{sign}{v * 1e6:.4g}us"
    secs = int(v)
    days, rem = divmod(secs, 86400)
    hours, rem = divmod(rem, 3600)
    minutes, seconds = divmod(rem, 60)
    parts = []
    if days:
        parts.append(f"{days}d")
    if hours or (days and (minutes or seconds)):
        parts.append(f"{hours}h")
    if minutes or ((days or hours) and seconds):
        parts.append(f"{minutes}m")
    if seconds or not parts:
        parts.append(f"{seconds}s")
    return sign + " ".join(parts)


def _as_float(v: object) -> float:
    if isinstance(v, int | float):
        return float(v)
    return float(str(v))


_FUNCS: dict[str, Callable[[object], str]] = {
    "humanize": lambda v: humanize(_as_float(v)),
    "humanize1024": lambda v: humanize1024(_as_float(v)),
    "humanizePercentage": lambda v: humanize_percentage(_as_float(v)),
    "humanizeDuration": lambda v: humanize_duration(_as_float(v)),
    "toUpper": lambda v: str(v).upper(),
    "toLower": lambda v: str(v).lower(),
    "title": lambda v: str(v).title(),
}


def _show(v: object) -> str:
    # Prometheus prints $value with Go's %v: integers without ".0".
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e15:
            return str(int(v))
        return repr(v)
    return str(v)


def _printf(fmt: str, v: object) -> str:
    try:
        return fmt % (v,)
    except (TypeError, ValueError):
        return fmt % (_show(v),) if "%s" in fmt or "%v" in fmt else _show(v)


Context = Mapping[str, object]
_Step = Callable[[Context], str]


def _argument(tok: str) -> Callable[[Context], object]:
    m = _LABEL.match(tok)
    if m:
        name = m.group(1)
        return lambda ctx: ctx["labels"].get(name, "")  # type: ignore[attr-defined]
    if tok in ("$value", "$threshold", "$alertname"):
        key = tok[1:]
        return lambda ctx: "" if ctx.get(key) is None else ctx[key]
    if tok.startswith('"'):
        text = re.sub(r"\\(.)", r"\1", tok[1:-1])
        return lambda ctx: text
    raise ValueError(f"unknown template argument {tok!r} (use $labels.NAME, $value, $threshold or $alertname)")


def _compile_action(body: str) -> _Step:
    tokens = _TOKEN.findall(body.strip())
    if not tokens:
        raise ValueError("empty template action {{ }}")
    # Split the pipeline on "|" into commands.
    commands: list[list[str]] = [[]]
    for tok in tokens:
        if tok == "|":
            commands.append([])
        else:
            commands[-1].append(tok)
    if any(not c for c in commands):
        raise ValueError(f"empty command in pipeline {{{{{body}}}}}")
    first = commands[0]
    if first[0] == "printf":
        if len(first) != 3 or not first[1].startswith('"'):
            raise ValueError('printf takes a quoted format and one argument: {{ printf "%.2f" $value }}')
        fmt = first[1][1:-1].replace("%v", "%s")
        arg = _argument(first[2])
        source: Callable[[Context], object] = lambda ctx: _printf(fmt, arg(ctx))  # noqa: E731
    elif first[0] in ("if", "with", "range", "else", "end", "define", "template"):
        raise ValueError(f"template control structure {first[0]!r} is not supported")
    else:
        if len(first) != 1:
            raise ValueError(f"unexpected {' '.join(first[1:])!r} after {first[0]!r}")
        source = _argument(first[0])
    steps: list[Callable[[object], str]] = []
    for cmd in commands[1:]:
        name = cmd[0]
        if name == "printf":
            if len(cmd) != 2 or not cmd[1].startswith('"'):
                raise ValueError('a piped printf takes one quoted format: {{ $value | printf "%.2f" }}')
            fmt = cmd[1][1:-1].replace("%v", "%s")
            steps.append(lambda v, fmt=fmt: _printf(fmt, v))
        elif name in _FUNCS and len(cmd) == 1:
            steps.append(_FUNCS[name])
        else:
            raise ValueError(f"unknown template function {name!r} (known: {', '.join(sorted(_FUNCS))}, printf)")

    def run(ctx: Context) -> str:
        v = source(ctx)
        for step in steps:
            try:
                v = step(v)
            except (TypeError, ValueError):
                v = _show(v)
        return _show(v)

    return run


class Template:
    """A compiled annotation template; ``render(labels=..., value=...)`` never raises."""

    __slots__ = ("source", "_parts")

    def __init__(self, source: str, parts: list[str | _Step]) -> None:
        self.source = source
        self._parts = parts

    def render(self, *, labels: Mapping[str, str], value: float | None, threshold: float | None, alertname: str) -> str:
        ctx = {"labels": labels, "value": value, "threshold": threshold, "alertname": alertname}
        return "".join(p if isinstance(p, str) else p(ctx) for p in self._parts)


def compile_template(source: str) -> Template:
    """Compile a template, or raise ValueError naming the bad action.

    >>> t = compile_template("{{ $labels.pod }} at {{ $value | humanizePercentage }}")
    >>> t.render(labels={"pod": "cart-1"}, value=0.934, threshold=0.9, alertname="X")
    'cart-1 at 93.4%'
    """
    parts: list[str | _Step] = []
    pos = 0
    for m in _ACTION.finditer(source):
        if m.start() > pos:
            parts.append(source[pos : m.start()])
        parts.append(_compile_action(m.group(1)))
        pos = m.end()
    rest = source[pos:]
    if "{{" in rest or "}}" in rest:
        raise ValueError("unbalanced {{ }} in template")
    if rest:
        parts.append(rest)
    return Template(source, parts)
