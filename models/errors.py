"""Errors raised by models/::

    KubepulseModelError
    ├── ConfigError      settings that cannot work; the message names each field and its fix
    ├── RecordError      bytes that are not a valid record of the expected kind
    └── ReplayError      a replay input file that cannot be read (names the file and line)
"""

from __future__ import annotations

__all__ = ["KubepulseModelError", "ConfigError", "RecordError", "ReplayError"]


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
