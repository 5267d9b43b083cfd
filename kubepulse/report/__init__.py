"""Capacity planning and right-sizing from the hourly rollups (``kubepulse report``).

* :func:`capacity` and :func:`rightsize` are the analyses: pure functions of hourly histories
  (:class:`EntityHistory`), quotas and HPAs, returning :class:`~models.records.CapacityForecast` and
  :class:`~models.records.Recommendation` records; :func:`forecast` is the trend model under the first.
* :func:`capacity_report`, :func:`rightsize_report` and :func:`run_reports` read Elasticsearch
  (every query is in ``kubepulse.report._queries``) and, for the last, write the report indices.
"""

from kubepulse.report._capacity import RESOURCES, Quota, capacity
from kubepulse.report._forecast import Forecast, forecast
from kubepulse.report._history import EntityHistory, Hourly, from_rollups
from kubepulse.report._queries import ReportWriteError
from kubepulse.report._render import capacity_table, kubectl_commands, rightsize_table
from kubepulse.report._rightsize import held_resources, mixture_quantile, rightsize
from kubepulse.report._run import NoHistory, RunSummary, capacity_report, install, rightsize_report, run_reports

__all__ = [
    "RESOURCES",
    "Quota",
    "capacity",
    "Forecast",
    "forecast",
    "EntityHistory",
    "Hourly",
    "from_rollups",
    "ReportWriteError",
    "capacity_table",
    "rightsize_table",
    "kubectl_commands",
    "held_resources",
    "mixture_quantile",
    "rightsize",
    "NoHistory",
    "install",
    "RunSummary",
    "capacity_report",
    "rightsize_report",
    "run_reports",
]
