"""Errors raised by collectors.simulator::

    SimulatorError        a fleet or a run that cannot work as asked (bad parameter, impossible incident)
    └── LabelsError       a labels file that cannot be read (names the file and line)
"""

from __future__ import annotations

__all__ = ["SimulatorError", "LabelsError"]


class SimulatorError(ValueError):
    """The simulated fleet cannot do what was asked; the message says what to change."""


class LabelsError(SimulatorError):
    """A labels (ground truth) file is malformed: the message names the file and line."""
