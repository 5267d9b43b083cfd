"""Replays NAB-layout CSV files through fresh detectors and writes their anomaly scores.

``DIR/<category>/<name>.csv`` (columns ``timestamp,value``) becomes
``OUT/<category>/<name>.csv`` (columns ``timestamp,value,anomaly_score``), the
layout NAB's scorer reads.  Each file is one series: it gets a fresh detector,
every row is scored before it is learned, and the timestamp is passed as
``t`` so time-aware detectors see the wall clock.  The CLI command
``kubepulse detect replay`` is a thin wrapper around :func:`replay`.
"""

from __future__ import annotations

import csv
import json
import math
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from models.detectors import DEFAULT_DETECTOR, make_detector
from models.errors import ReplayError

__all__ = ["replay", "read_series", "score_series"]


def _epoch(text: str) -> float:
    """Epoch seconds from a number or an ISO 8601 time (naive times are UTC, as NAB's are)."""
    try:
        return float(text)
    except ValueError:
        pass
    stamp = datetime.fromisoformat(text.strip())
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=timezone.utc)
    return stamp.timestamp()


def read_series(path: Path) -> list[tuple[str, str, float, float]]:
    """(timestamp text, value text, t, value) per data row; ReplayError names file and line."""
    rows = []
    try:
        with path.open(newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader, None)
            if header is None:
                raise ReplayError(f"{path}:1: empty file, expected a 'timestamp,value' header")
            names = [h.strip() for h in header]
            missing = [c for c in ("timestamp", "value") if c not in names]
            if missing:
                raise ReplayError(
                    f"{path}:1: missing column(s) {', '.join(missing)}; header is {','.join(names)}"
                )
            ti, vi = names.index("timestamp"), names.index("value")
            width = max(ti, vi) + 1
            for row in reader:
                line = reader.line_num
                if not row:
                    continue
                if len(row) < width:
                    raise ReplayError(f"{path}:{line}: expected timestamp and value, got {row!r}")
                try:
                    t = _epoch(row[ti])
                except ValueError as exc:
                    raise ReplayError(f"{path}:{line}: bad timestamp {row[ti]!r}") from exc
                try:
                    v = float(row[vi])
                except ValueError as exc:
                    raise ReplayError(f"{path}:{line}: bad value {row[vi]!r}") from exc
                rows.append((row[ti], row[vi], t, v))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ReplayError(f"{path}: cannot read: {exc}") from exc
    return rows


def score_series(det: Any, ts: list[float], values: list[float]) -> tuple[list[float], float]:
    """Every value scored before it is learned, at its time: (scores, CPU seconds of the loop).

    >>> from models.detectors import make_detector
    >>> scores, _ = score_series(make_detector("ewma_z", warmup=2), [0.0, 1.0, 2.0, 3.0], [1.0, 1.0, 1.0, 9.0])
    >>> [round(s) for s in scores]  # 8 away from a constant 1: its error scale is the 0.1% floor
    [0, 0, 0, 8000]
    """
    feature = det.params().get("feature", "value")
    score_one, learn_one = det.score_one, det.learn_one
    scores: list[float] = []
    append = scores.append
    started = time.process_time()
    for v, t in zip(values, ts):
        x = {feature: v}
        append(score_one(x, t=t))
        learn_one(x, t=t)
    return scores, time.process_time() - started


def replay(
    data_dir: Path,
    out_dir: Path,
    *,
    detector: str = DEFAULT_DETECTOR,
    summary_json: Path | None = None,
    params: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Score every ``data_dir/<category>/<name>.csv`` with a fresh detector into ``out_dir``.

    Returns (and writes to ``summary_json`` when given) a summary: ``files``,
    ``points``, ``seconds`` and ``points_per_s`` (timing only the
    ``score_one`` + ``learn_one`` step; ``points_per_cpu_s`` divides by the
process's CPU time instead, the one-core rate on a shared machine),
``state_bytes_max`` and
    ``state_bytes_mean`` (``det.to_bytes()`` after each file), ``detector``
    and ``parameters``.  ``params`` overrides the detector's defaults.
    Bad input raises :class:`~models.errors.ReplayError` naming the file and
    line, before any later file is processed.
    """
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    if not data_dir.is_dir():
        raise ReplayError(f"{data_dir}: not a directory")
    files = sorted(p for p in data_dir.glob("*/*.csv") if p.is_file())
    if not files:
        raise ReplayError(f"{data_dir}: no <category>/<name>.csv files")
    params = dict(params or {})
    points = 0
    seconds = 0.0
    cpu_seconds = 0.0
    sizes = []
    parameters: dict[str, Any] = {}
    for path in files:
        rows = read_series(path)
        det = make_detector(detector, **params)
        parameters = det.params()
        started = time.perf_counter()
        scores, cpu = score_series(det, [t for _, _, t, _ in rows], [v for _, _, _, v in rows])
        seconds += time.perf_counter() - started
        cpu_seconds += cpu
        points += len(rows)
        sizes.append(len(det.to_bytes()))

        target = out_dir / path.parent.name / path.name
        target.parent.mkdir(parents=True, exist_ok=True)
        with target.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(("timestamp", "value", "anomaly_score"))
            writer.writerows(
                (stamp, value, repr(score) if math.isfinite(score) else "0.0")
                for (stamp, value, _, _), score in zip(rows, scores)
            )

    summary = {
        "detector": detector,
        "parameters": parameters,
        "files": len(files),
        "points": points,
        "seconds": seconds,
        "points_per_s": points / seconds if seconds > 0 else 0.0,
        # CPU time of this single-threaded loop: the per-core rate even on a busy machine.
        "points_per_cpu_s": points / cpu_seconds if cpu_seconds > 0 else 0.0,
        "state_bytes_max": max(sizes),
        "state_bytes_mean": sum(sizes) / len(sizes),
    }
    if summary_json is not None:
        Path(summary_json).parent.mkdir(parents=True, exist_ok=True)
        Path(summary_json).write_text(json.dumps(summary, indent=2) + "\n")
    return summary
