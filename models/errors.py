"""Errors raised by models/::

    KubepulseModelError
    ├── ConfigError      settings that cannot work; the message names each field and its fix
    ├── RecordError      bytes that are not a valid record of the expected kind
    ├── ReplayError      a replay input file that cannot be read (names the file and line)
    └── DetectorStateError  bytes that are not a detector state (models.detectors.detector_from_bytes)
"""

from __future__ import annotations

__all__ = ["KubepulseModelError", "ConfigError", "RecordError", "ReplayError", "DetectorStateError"]


class KubepulseModelError(Exception):
    """Root of the errors raised by models/."""


class ConfigError(KubepulseModelError):
    """Settings failed validation; ``str(exc)`` lists each bad field and how to fix it."""


class RecordError(KubepulseModelError):
    """A message is not a valid record; ``reason`` is what goes to the dead-letter topic."""

    def __init__(self, reason: str, *, error_type: str = "") -> None:
        super().__init__(reason)
        self.reason = reason
        self.error_type = error_type


class ReplayError(KubepulseModelError):
    """A replay input is malformed: the message names the file and line."""


class DetectorStateError(KubepulseModelError, ValueError):
    """Bytes that are not a detector state this kubepulse can read (unknown tag, version or a truncated record)."""
