"""A simulated fleet of Kubernetes clusters that publishes what the real collectors publish, with labelled incidents.

:class:`Fleet` is the pure, seeded generator (``step(now)`` gives node scrapes,
events and the incidents it injected, ``quotas()`` the namespaces'
ResourceQuotas as of that step); :func:`run` publishes it to Kafka in
real, accelerated or no-sleep time and writes the ground truth to a labels
file; :mod:`collectors.simulator.labels` scores detections against it.
"""

from collectors.simulator._fleet import Fleet, StepResult
from collectors.simulator._incidents import DEFAULT_DURATION_S, INCIDENT_EFFECTS, KINDS, IncidentKind, IncidentPlan
from collectors.simulator._publish import RunStats, run
from collectors.simulator._scenarios import Autoscaled, Growing, Oversized, Scenario
from collectors.simulator.errors import LabelsError, SimulatorError

__all__ = [
    "Autoscaled",
    "Growing",
    "Oversized",
    "Scenario",
    "DEFAULT_DURATION_S",
    "INCIDENT_EFFECTS",
    "KINDS",
    "Fleet",
    "IncidentKind",
    "IncidentPlan",
    "LabelsError",
    "RunStats",
    "SimulatorError",
    "StepResult",
    "run",
]
