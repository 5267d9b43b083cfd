"""Alert fingerprints: Alertmanager's FNV-64a over sorted label pairs."""

from __future__ import annotations

from collections.abc import Mapping

_FNV_OFFSET = 0xCBF29CE484222325
_FNV_PRIME = 0x100000001B3
_MASK = 0xFFFFFFFFFFFFFFFF
_SEP = 0xFF  # prometheus/common model.SeparatorByte


def fingerprint(labels: Mapping[str, str]) -> str:
    """Return the 16-hex-digit fingerprint of a label set.

    Same algorithm as Prometheus' ``model.LabelSet.Fingerprint`` (FNV-1a 64 over
    ``name 0xff value 0xff`` for names in sorted order), so an alert sent to
    kubepulse and to Alertmanager gets the same identity, and it doubles as
    PagerDuty's ``dedup_key``.

    >>> fingerprint({})
    'cbf29ce484222325'
    >>> fingerprint({"b": "2", "a": "1"}) == fingerprint({"a": "1", "b": "2"})
    True
    """
    h = _FNV_OFFSET
    for name in sorted(labels):
        for byte in name.encode():
            h = ((h ^ byte) * _FNV_PRIME) & _MASK
        h = ((h ^ _SEP) * _FNV_PRIME) & _MASK
        for byte in labels[name].encode():
            h = ((h ^ byte) * _FNV_PRIME) & _MASK
        h = ((h ^ _SEP) * _FNV_PRIME) & _MASK
    return f"{h:016x}"
