"""Benchmark of the default anomaly detector: speed, state size, NAB score in and out of sample, and the simulated fleet.

Replays the NAB subset (``../shared/nab/data`` relative to the repo, or to its
parent for a worktree, or ``KUBEPULSE_BENCH_NAB``; the data directory may also be
given as argv[1] or ``KUBEPULSE_BENCH_NAB_DATA``) through fresh
detectors, or a synthetic daily-cycle fleet when that directory is absent,
and scores it with NAB's scorer (``../shared/nab/nab_score.py``).  The last
line printed is one JSON object with the budgets: points per CPU-second of
score + learn (``--micro``'s measurement of the default detector, >= 300k),
bytes per series (``to_bytes()`` after each NAB file, <= 1 KiB) and the
cross-validated NAB score.

``--cv`` estimates the score on data the detector was not tuned on, the way
the acceptance measures it (the whole NAB corpus, of which only 28 of 58
files are here).  Every parameter and the threshold are chosen on the other
folds only: the grid (``GRIDS``, a few settings with a meaning) is replayed
once, then for each fold the setting and threshold that score best on the
training files are applied to the held-out files.  Two partitions:

* ``loco``: leave one category out (artificialNoAnomaly,
  artificialWithAnomaly, realAWSCloudwatch);
* ``mixed``: the two artificial categories left out as above, and
  realAWSCloudwatch one file at a time (17 folds).

Each reports ``pooled`` (every held-out file scored with the setting and
threshold of its fold, normalised over the subset as NAB normalises a
corpus: the number to compare with the in-sample score), and ``mean`` /
``worst`` over the folds that have anomaly windows (a fold without windows,
such as artificialNoAnomaly, has no normalised score of its own; its false
positive rows are listed).  ``--defaults-only`` holds out only the threshold
of the shipped defaults: an upper bound, since those defaults were themselves
chosen on this subset.

``--sim`` runs the simulated fleet with the streams' scored metrics and
detectors (``streams.scoring.new_detector``) at the default threshold, once
with incidents off (anomaly records per 1,000 series-days) and once with
incidents on (recall within 5 scrapes, median delay and false alarms per
1,000 series-days from ``collectors.simulator.labels.score``).

``--micro`` times the bare ``score_one`` + ``learn_one`` step of every
registered detector on 200k noisy points at a 15 s scrape (the streams
worker makes the same step in one call, ``score_learn``, which is faster), and reports the median points per CPU-second of ``--runs``
runs (CPU time, so other processes on a shared machine matter less).

    python bench/detector.py [DATA_DIR] [--detector NAME]
    python bench/detector.py --cv [--detector NAME] [--defaults-only]
    python bench/detector.py --sim [--days 4] [--nodes 8] [--threshold T]
    python bench/detector.py --micro [--runs 5] [--points 200000]
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.detectors import DEFAULT_DETECTOR, DETECTORS, make_detector  # noqa: E402
from models.replay import read_series, replay, score_series  # noqa: E402



def _find_nab() -> Path:
    """``KUBEPULSE_BENCH_NAB`` or the first ``shared/nab`` beside the checkout or beside its parent (worktrees)."""
    env = os.environ.get("KUBEPULSE_BENCH_NAB")
    if env:
        return Path(env)
    for root in (REPO.parent, REPO.parent.parent):
        if (root / "shared" / "nab" / "nab_score.py").is_file():
            return root / "shared" / "nab"
    return REPO.parent / "shared" / "nab"


NAB = _find_nab()
PROFILES = {"standard": "std", "reward_low_FP_rate": "low_fp", "reward_low_FN_rate": "low_fn"}
POINTS_PER_CPU_S_MIN = 300_000
STATE_BYTES_MAX = 1024


def _grid(**axes: list[Any]) -> list[dict[str, Any]]:
    names = list(axes)
    return [dict(zip(names, values)) for values in itertools.product(*axes.values())]


GRIDS: dict[str, list[dict[str, Any]]] = {
    # How many samples of evidence a score weighs (short: 20, 10 or 5) and how long the
    # level and error remember (alpha: 1000, 500 or 200 samples). Nine settings, each of
    # them sensible on its own; the folds choose, the held-out files judge the choice.
    "seasonal_lik": _grid(short=[0.05, 0.1, 0.2], alpha=[0.001, 0.002, 0.005]),
    "seasonal_ctx": _grid(short=[0.05, 0.1, 0.2], alpha=[0.001, 0.002, 0.005]),
    "seasonal_z": _grid(alpha=[0.001, 0.003, 0.01], refractory=[100, 400]),
    "ewma_z": _grid(alpha=[0.001, 0.003, 0.01]),
}


def synthetic(root: Path, *, series: int = 20, points: int = 20_000) -> None:
    """Daily cycles at a 15 s scrape, noise, a spike and a level shift per series."""
    rng = random.Random(0)
    day = 86400 / 15
    for k in range(series):
        path = root / "synthetic" / f"series_{k:03d}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w") as fh:
            fh.write("timestamp,value\n")
            for i in range(points):
                v = 50 + 20 * math.sin(2 * math.pi * i / day) + rng.gauss(0, 2)
                v += 40 if i == points // 2 else 0
                v += 15 if i > 3 * points // 4 else 0
                fh.write(f"{1_700_000_000 + 15 * i},{v:.4f}\n")


def nab_scores(out: Path) -> dict[str, float]:
    """Run NAB's scorer (as a separate process, as the acceptance does) on the replay output."""
    proc = subprocess.run(
        [sys.executable, str(NAB / "nab_score.py"), "--results-dir", str(out), "--detector", "kubepulse"],
        capture_output=True, text=True, check=True,
    )
    for line in proc.stdout.splitlines():
        cells = line.split("\t")
        if cells[0] == "kubepulse" and len(cells) == 4 and all(re.fullmatch(r"-?[\d.]+", c) for c in cells[1:]):
            return {"std": float(cells[1]), "low_fp": float(cells[2]), "low_fn": float(cells[3])}
    raise RuntimeError(f"cannot parse the NAB scorer's output:\n{proc.stdout}\n{proc.stderr}")


# -- cross-validation -------------------------------------------------------------------------


class _Corpus:
    """The NAB subset loaded once: its series, the scorer, and scores per grid setting."""

    def __init__(self, data_dir: Path) -> None:
        sys.path.insert(0, str(NAB))
        from nab_score import NABScorer

        self.scorer = NABScorer(str(NAB))
        self.files = self.scorer.file_names()
        self.series = {}
        for rel in self.files:
            rows = read_series(data_dir / rel)
            self.series[rel] = ([t for _, _, t, _ in rows], [v for _, _, _, v in rows])
        self._null: dict[tuple[tuple[str, ...], str], float] = {}

    def scores(self, detector: str, params: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        out = {}
        for rel in self.files:
            ts, vs = self.series[rel]
            got, _ = score_series(make_detector(detector, **params), ts, vs)
            arr = np.asarray(got, dtype=float)
            arr[~np.isfinite(arr)] = 0.0
            out[rel] = arr
        return out

    def sweep(self, scores: dict, names: list[str], profile: str, threshold: float | None = None) -> dict:
        s = self.scorer
        fixed = None if threshold is None else threshold
        return s._sweep(*s._assemble(scores, tuple(names)), s.profiles[profile], fixed_threshold=fixed)

    def null(self, names: list[str], profile: str) -> float:
        import numpy as np

        key = (tuple(names), profile)
        if key not in self._null:
            flat = {rel: np.full(self.scorer.files[rel].n_rows, 0.5) for rel in names}
            self._null[key] = self.sweep(flat, names, profile)["raw"]
        return self._null[key]

    def windows(self, names: list[str]) -> int:
        return sum(len(self.scorer.files[rel].window_spans) for rel in names)

    def normalised(self, raw: float, names: list[str], profile: str) -> float | None:
        perfect = self.scorer.profiles[profile]["tp"] * self.windows(names)
        null = self.null(names, profile)
        return None if perfect == null else 100.0 * (raw - null) / (perfect - null)


def _folds(files: list[str]) -> dict[str, list[tuple[str, list[str]]]]:
    categories = sorted({rel.split("/")[0] for rel in files})
    loco = [(cat, [rel for rel in files if rel.startswith(cat + "/")]) for cat in categories]
    mixed = [f for f in loco if f[0] != "realAWSCloudwatch"]
    mixed += [(rel, [rel]) for rel in files if rel.startswith("realAWSCloudwatch/")]
    return {"loco": loco, "mixed": mixed}


def cross_validate(corpus: _Corpus, detector: str, grid: list[dict[str, Any]]) -> dict[str, Any]:
    """Leave-one-category-out and leave-one-file-out NAB scores; settings and threshold from training folds."""
    started = time.process_time()
    candidates = [(params, corpus.scores(detector, params)) for params in grid]
    files = corpus.files
    result: dict[str, Any] = {"grid": grid, "replay_cpu_s": round(time.process_time() - started, 1)}
    for profile, short in PROFILES.items():
        per_profile: dict[str, Any] = {}
        for partition, folds in _folds(files).items():
            held_raw = 0.0
            rows = []
            for name, test in folds:
                train = [rel for rel in files if rel not in test]
                best = None
                for k, (params, scores) in enumerate(candidates):
                    sw = corpus.sweep(scores, train, profile)
                    if best is None or sw["raw"] > best[0]:
                        best = (sw["raw"], k, sw["threshold"])
                _, k, threshold = best
                held = corpus.sweep(candidates[k][1], test, profile, math.inf if threshold is None else threshold)
                held_raw += held["raw"]
                rows.append({
                    "fold": name, "setting": k, "threshold": threshold,
                    "score": corpus.normalised(held["raw"], test, profile),
                    "windows": f"{held['windows_detected']}/{held['windows_scored']}", "fp_rows": held["fp_rows"],
                })
            scored = [r["score"] for r in rows if r["score"] is not None]
            per_profile[partition] = {
                "pooled": round(corpus.normalised(held_raw, files, profile), 2),
                "mean": round(statistics.fmean(scored), 2),
                "worst": round(min(scored), 2),
                "worst_fold": min((r for r in rows if r["score"] is not None), key=lambda r: r["score"])["fold"],
                "settings_chosen": dict(Counter(json.dumps(grid[r["setting"]], sort_keys=True) for r in rows)),
                "folds": rows,
            }
        # In sample, for reference only: every setting and the threshold chosen on all files.
        best = max((corpus.sweep(scores, files, profile)["raw"], k) for k, (_, scores) in enumerate(candidates))
        per_profile["in_sample_best_of_grid"] = round(corpus.normalised(best[0], files, profile), 2)
        result[short] = per_profile
    return result


def cv_summary(cv: dict[str, Any]) -> dict[str, Any]:
    """The headline numbers of ``cross_validate``: pooled / mean / worst per partition and profile."""
    return {
        short: {part: {k: cv[short][part][k] for k in ("pooled", "mean", "worst", "worst_fold")}
                for part in ("loco", "mixed")} | {"in_sample_best_of_grid": cv[short]["in_sample_best_of_grid"]}
        for short in PROFILES.values()
    }


def print_folds(cv: dict[str, Any]) -> None:
    for short in PROFILES.values():
        for part in ("loco", "mixed"):
            p = cv[short][part]
            print(f"[{short} {part}] pooled {p['pooled']:.2f} mean {p['mean']:.2f} worst {p['worst']:.2f}", file=sys.stderr)
            for r in p["folds"]:
                score = "  n/a" if r["score"] is None else f"{r['score']:6.2f}"
                th = "never" if r["threshold"] is None else f"{r['threshold']:.3f}"
                print(f"    {r['fold']:58s} {score}  windows {r['windows']:5s} fp {r['fp_rows']:3d}  "
                      f"threshold {th}  setting {json.dumps(cv['grid'][r['setting']], sort_keys=True)}", file=sys.stderr)


# -- the simulated fleet ----------------------------------------------------------------------


def simulate(*, detector: str, threshold: float, days: float, nodes: int, pods: int, incidents: str,
             incident_every_s: float, seed: int) -> dict[str, Any]:
    """One run of the simulated fleet through the streams' scored metrics and detectors."""
    from datetime import datetime, timedelta, timezone

    from collectors.simulator import Fleet
    from collectors.simulator.labels import Detection, score
    from models.settings import Settings
    from streams.scoring import new_detector, scored_metric_names, scored_samples

    interval = 15.0
    scored = scored_metric_names(Settings().streams.scored_metrics)
    fleet = Fleet(clusters=1, nodes_per_cluster=nodes, pods_per_node=pods, seed=seed, interval_s=interval,
                  incidents=incidents, incident_every_s=incident_every_s)
    t0 = datetime(2026, 1, 5, tzinfo=timezone.utc)
    dets: dict[str, Any] = {}
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    records: list[tuple[float, str, datetime, str]] = []
    injected = []
    cpu_det = 0.0
    started = time.process_time()
    x: dict[str, float] = {}
    for i in range(int(days * 86400 / interval)):
        ts = t0 + timedelta(seconds=interval * i)
        t = ts.timestamp()
        scrapes, _, new = fleet.step(ts)
        injected += new
        c0 = time.process_time()
        for scrape in scrapes:
            for sid, metric, v in scored_samples(scrape, scored):
                det = dets.get(sid)
                if det is None:
                    det = dets[sid] = new_detector(detector, metric=metric)
                    first[sid] = t
                last[sid] = t
                x["value"] = v
                s = det.score_one(x, t=t)
                if s > threshold:
                    records.append((s, sid, ts, scrape.node))
                det.learn_one(x, t=t)
        cpu_det += time.process_time() - c0
    series_days = sum(last[sid] - first[sid] for sid in dets) / 86400
    touching = [inc for inc in injected if any(m in scored for m in inc.metrics)]
    detections = [Detection.from_series(sid, ts, source="anomaly", node=node) for _, sid, ts, node in records]
    s = score(touching, detections, interval_s=interval, series_days=series_days)
    within5 = sum(1 for d in s.delays_scrapes if d <= 5)
    out: dict[str, Any] = {
        "incidents": incidents, "days": days, "nodes": nodes, "series": len(dets),
        "series_days": round(series_days, 1), "threshold": threshold,
        "anomaly_records": len(records),
        "records_per_1000_series_days": round(1000 * len(records) / series_days, 3),
        "records_by_metric": dict(Counter(sid.rsplit("/", 1)[1] for _, sid, _, _ in records).most_common(6)),
        "cpu_s": round(time.process_time() - started, 1), "detector_cpu_s": round(cpu_det, 1),
    }
    if incidents != "none":
        out.update({
            "incidents_touching_scored": s.incidents,
            "detected": s.detected,
            "recall_within_5_scrapes": round(within5 / s.incidents, 3) if s.incidents else None,
            "recall": s.detection_rate,
            "median_delay_scrapes": s.median_delay_scrapes,
            "false_alarms": s.false_alarms,
            "false_alarms_per_1000_series_days": round(1000 * s.false_alarms / series_days, 3),
            "per_kind": {k: f"{d}/{n}" for k, (d, n) in s.per_kind.items()},
            "missed": s.missed,
        })
    return out


# -- speed -------------------------------------------------------------------------------------


def micro(*, runs: int, points: int) -> dict[str, object]:
    """Median points per CPU-second of score_one + learn_one, per registered detector."""
    rng = random.Random(0)
    xs = [({"value": 50 + 10 * rng.random()}, 1.7e9 + 15 * i) for i in range(points)]
    rates: dict[str, list[float]] = {name: [] for name in DETECTORS}
    for _ in range(runs):  # interleaved, so a noisy moment hits every detector alike
        for name in DETECTORS:
            det = make_detector(name)
            score_one, learn_one = det.score_one, det.learn_one
            started = time.process_time()
            for x, t in xs:
                score_one(x, t=t)
                learn_one(x, t=t)
            rates[name].append(points / (time.process_time() - started))
    return {
        "bench": "detector_micro",
        "points": points,
        "runs": runs,
        "points_per_cpu_s_median": {name: round(statistics.median(r)) for name, r in rates.items()},
        "points_per_cpu_s_all": {name: [round(x) for x in r] for name, r in rates.items()},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("data_dir", nargs="?", default=os.environ.get("KUBEPULSE_BENCH_NAB_DATA", str(NAB / "data")))
    ap.add_argument("--detector", default=DEFAULT_DETECTOR)
    ap.add_argument("--cv", action="store_true", help="also print every cross-validation fold (stderr)")
    ap.add_argument("--defaults-only", action="store_true",
                    help="cross-validate only the threshold of the detector's defaults (no grid)")
    ap.add_argument("--sim", action="store_true", help="the simulated fleet: false alarms and recall")
    ap.add_argument("--micro", action="store_true", help="time the bare score+learn step of every detector")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--days", type=float, default=4.0, help="--sim: simulated days per run")
    ap.add_argument("--nodes", type=int, default=8, help="--sim: nodes (10 pods each)")
    ap.add_argument("--threshold", type=float, default=None, help="--sim: default streams.anomaly_threshold")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    if args.micro:
        print(json.dumps(micro(runs=args.runs, points=args.points)))
        return
    if args.sim:
        from models.settings import Settings

        threshold = args.threshold if args.threshold is not None else Settings().streams.anomaly_threshold
        detector = "default" if args.detector == DEFAULT_DETECTOR else args.detector
        common = dict(detector=detector, threshold=threshold, nodes=args.nodes, pods=10, seed=args.seed)
        quiet = simulate(days=args.days, incidents="none", incident_every_s=3600.0, **common)
        print(json.dumps(quiet), file=sys.stderr)
        found = simulate(days=args.days / 2, incidents="cycle", incident_every_s=3600.0, **common)
        print(json.dumps(found), file=sys.stderr)
        print(json.dumps({"bench": "detector_sim", "detector": detector, "threshold": threshold,
                          "healthy": quiet, "incidents": found}))
        return

    speed = micro(runs=args.runs, points=args.points)["points_per_cpu_s_median"][args.detector]
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data_dir)
        is_nab = data.is_dir()
        if not is_nab:
            data = Path(tmp) / "data"
            synthetic(data)
        out = Path(tmp) / "out"
        summary = replay(data, out, detector=args.detector)
        result: dict[str, Any] = {
            "bench": "detector",
            "detector": summary["detector"],
            "data": str(args.data_dir) if is_nab else "synthetic",
            "points": summary["points"],
            "points_per_cpu_s": speed,
            "points_per_cpu_s_nab_replay": round(summary["points_per_cpu_s"]),
            "bytes_per_series": round(summary["state_bytes_mean"], 1),
            "bytes_per_series_max": summary["state_bytes_max"],
        }
        budgets = {
            "points_per_cpu_s": speed >= POINTS_PER_CPU_S_MIN,
            "bytes_per_series": summary["state_bytes_max"] <= STATE_BYTES_MAX,
        }
        if is_nab and (NAB / "nab_score.py").is_file():
            result["nab_in_sample_defaults"] = nab_scores(out)
            grid = [{}] if args.defaults_only else GRIDS.get(args.detector, [{}])
            cv = cross_validate(_Corpus(data), args.detector, grid)
            if args.cv:
                print_folds(cv)
            result["cv"] = cv_summary(cv)
            result["cv_score"] = cv["std"]["loco"]["pooled"]
        result["budgets_met"] = budgets
    print(json.dumps(summary["parameters"]), file=sys.stderr)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
