"""Panel specifications: what each chart shows, in a form both the Lens builder and the query translator read.

A panel is declared once (:class:`Panel`) and rendered twice: into a Lens
saved object (``kibana._lens``) and into an Elasticsearch search body
(``kibana._translate``), so the test that runs the search against real data
checks the same fields, filters and aggregations the dashboard uses.

Filters are a conjunction of simple conditions (:class:`Is`, :class:`Exists`,
:class:`AtLeast`, :class:`Not`) rather than free KQL: each renders to KQL for Kibana and to
query DSL for the check, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Union

__all__ = [
    "Is",
    "Exists",
    "AtLeast",
    "Not",
    "Cond",
    "kql",
    "dsl",
    "Agg",
    "Bin",
    "Expr",
    "Metric",
    "Formula",
    "Terms",
    "DateHistogram",
    "Panel",
    "SearchSpec",
    "DashboardSpec",
    "CONTROL_FIELDS",
]

# -------------------------------------------------------------------- filters


@dataclass(frozen=True)
class Is:
    """``field`` equals one of ``values`` (a keyword match)."""

    field: str
    values: tuple[str, ...]

    def __init__(self, field: str, *values: str) -> None:
        if not values:
            raise ValueError(f"Is({field!r}) needs at least one value")
        object.__setattr__(self, "field", field)
        object.__setattr__(self, "values", tuple(values))


@dataclass(frozen=True)
class Exists:
    field: str


@dataclass(frozen=True)
class AtLeast:
    """``field >= value``: a numeric threshold (``kubernetes.resourcequota.used.pct >= 0.8``)."""

    field: str
    value: float


@dataclass(frozen=True)
class Not:
    cond: Is | Exists | AtLeast


Cond = Union[Is, Exists, AtLeast, Not]


def _kql_value(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _kql_one(c: Cond) -> str:
    if isinstance(c, Not):
        return f"not {_kql_one(c.cond)}"
    if isinstance(c, Exists):
        return f"{c.field} : *"
    if isinstance(c, AtLeast):
        return f"{c.field} >= {c.value:g}"
    if len(c.values) == 1:
        return f"{c.field} : {_kql_value(c.values[0])}"
    return f"{c.field} : (" + " or ".join(_kql_value(v) for v in c.values) + ")"


def kql(where: tuple[Cond, ...]) -> str:
    """The KQL of a conjunction, as Kibana stores it in a query.

    >>> kql((Is("metricset.name", "node"), Not(Is("kubernetes.event.type", "Normal", "Info"))))
    'metricset.name : "node" and not kubernetes.event.type : ("Normal" or "Info")'
    >>> kql((AtLeast("kubernetes.resourcequota.used.pct", 0.8),))
    'kubernetes.resourcequota.used.pct >= 0.8'
    """
    return " and ".join(_kql_one(c) for c in where)


def _dsl_one(c: Cond) -> dict:
    if isinstance(c, Not):
        return {"bool": {"must_not": [_dsl_one(c.cond)]}}
    if isinstance(c, Exists):
        return {"exists": {"field": c.field}}
    if isinstance(c, AtLeast):
        return {"range": {c.field: {"gte": c.value}}}
    if len(c.values) == 1:
        return {"term": {c.field: c.values[0]}}
    return {"terms": {c.field: list(c.values)}}


def dsl(where: tuple[Cond, ...]) -> list[dict]:
    """The query DSL clauses (for a ``bool.filter``) of a conjunction."""
    return [_dsl_one(c) for c in where]


def cond_fields(where: tuple[Cond, ...]) -> list[str]:
    return [(c.cond if isinstance(c, Not) else c).field for c in where]


# -------------------------------------------------------------------- metrics

Op = Literal["count", "sum", "average", "max", "min", "unique_count"]
Format = Literal["number", "percent", "bytes", "duration"] | None


@dataclass(frozen=True)
class Agg:
    """A formula leaf: ``sum(field)``, ``count()``..."""

    op: Op
    field: str | None = None


@dataclass(frozen=True)
class Bin:
    """A formula node: ``left <op> right`` with tinymath's function names."""

    op: Literal["divide", "multiply", "add", "subtract"]
    left: Expr
    right: Expr


Expr = Union[Agg, Bin, float, int]


@dataclass(frozen=True)
class Metric:
    """One Lens metric column (``operationType`` = ``op``), optionally filtered on its own."""

    op: Op
    field: str | None
    label: str
    fmt: Format = None
    where: tuple[Cond, ...] = ()


@dataclass(frozen=True)
class Formula:
    """A Lens formula column: an expression of aggregations (``sum(a) / sum(b)``)."""

    expr: Expr
    label: str
    fmt: Format = None


@dataclass(frozen=True)
class Terms:
    field: str
    size: int = 10
    label: str | None = None


@dataclass(frozen=True)
class DateHistogram:
    field: str = "@timestamp"
    interval: str = "auto"


Chart = Literal["line", "area", "bar", "bar_stacked", "area_stacked", "metric", "table", "pie"]


@dataclass(frozen=True)
class Panel:
    """One Lens visualization on one data view (``kind`` is the index kind: ``metrics``, ``rollups-1m``...).

    ``x`` is the horizontal axis of a chart (a date histogram or terms);
    ``split`` breaks series down (terms); ``rows`` are a table's bucket
    columns. ``where`` is the visualization's own query.
    """

    key: str
    title: str
    kind: str
    chart: Chart
    metrics: tuple[Metric | Formula, ...]
    x: DateHistogram | Terms | None = None
    split: Terms | None = None
    rows: tuple[Terms, ...] = ()
    where: tuple[Cond, ...] = ()
    description: str = ""
    w: int = 24
    h: int = 12

    def buckets(self) -> list[DateHistogram | Terms]:
        """Bucket dimensions outermost first (as Lens nests them)."""
        out: list[DateHistogram | Terms] = list(self.rows)
        if self.split is not None:
            out.append(self.split)
        if self.x is not None:
            # Lens nests the breakdown outside the x axis for terms splits of a time chart.
            out.append(self.x)
        return out

    def fields(self) -> list[str]:
        """Every document field the panel reads (for the mapping checks)."""
        out = cond_fields(self.where)
        for b in self.buckets():
            out.append(b.field)
        for m in self.metrics:
            if isinstance(m, Metric):
                if m.field:
                    out.append(m.field)
                out += cond_fields(m.where)
            else:
                out += expr_fields(m.expr)
        return out


def expr_fields(e: Expr) -> list[str]:
    if isinstance(e, Agg):
        return [e.field] if e.field else []
    if isinstance(e, Bin):
        return expr_fields(e.left) + expr_fields(e.right)
    return []


@dataclass(frozen=True)
class SearchSpec:
    """A saved Discover search: a data view, a query and the columns shown."""

    key: str
    title: str
    kind: str
    where: tuple[Cond, ...]
    columns: tuple[str, ...]
    description: str = ""

    def fields(self) -> list[str]:
        return cond_fields(self.where) + list(self.columns)


@dataclass(frozen=True)
class DashboardSpec:
    """A dashboard: panels (Lens specs or saved searches, in reading order) and its controls' data view.

    ``nav_title`` is its name in the navigation panel every dashboard starts with. Dashboards follow the
    global time picker (nothing of time or refresh is stored with them).
    """

    key: str
    title: str
    description: str
    panels: tuple[Panel | SearchSpec, ...]
    control_kind: str
    nav_title: str = ""
    controls: tuple[tuple[str, str], ...] = field(default_factory=lambda: CONTROL_FIELDS)


CONTROL_FIELDS: tuple[tuple[str, str], ...] = (("orchestrator.cluster.name", "Cluster"), ("kubernetes.namespace", "Namespace"))
"""The options-list controls every dashboard gets: ECS names present in every kind with a cluster."""
