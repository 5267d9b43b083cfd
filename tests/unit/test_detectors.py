"""The online anomaly detectors on synthetic series, their state, and the NAB-layout replay."""

from __future__ import annotations

import csv
import json
import math
import pickle
import random
import struct
from pathlib import Path

import pytest
from river import base

from models.detectors import (
    DEFAULT_DETECTOR,
    DETECTORS,
    ContextLikelihood,
    EWMAZScore,
    SeasonalLikelihood,
    SeasonalZScore,
    make_detector,
)
from models.errors import KubepulseModelError, ReplayError
from models.replay import replay

STEP = 15.0  # seconds between scrapes
DAY = int(86400 / STEP)


def run(det, values, *, t0: float = 0.0, step: float | None = STEP) -> list[float]:
    """Score-then-learn every value; timestamps every `step` seconds (None: no time)."""
    scores = []
    for i, v in enumerate(values):
        x = {"value": v}
        t = None if step is None else t0 + i * step
        scores.append(det.score_one(x, t=t))
        det.learn_one(x, t=t)
    return scores


def noise(n: int, *, level: float = 100.0, sd: float = 1.0, seed: int = 7) -> list[float]:
    rng = random.Random(seed)
    return [level + rng.gauss(0.0, sd) for _ in range(n)]


def daily(n: int, *, seed: int = 3) -> list[float]:
    rng = random.Random(seed)
    return [50 + 30 * math.sin(2 * math.pi * i / DAY) + rng.gauss(0, 1) for i in range(n)]


def test_every_registered_detector_is_a_river_anomaly_detector_with_name_and_params():
    assert DEFAULT_DETECTOR in DETECTORS
    for name, cls in DETECTORS.items():
        det = make_detector(name)
        assert isinstance(det, base.AnomalyDetector)
        assert det.name == name
        assert det.params()["feature"] == "value"
    assert make_detector("ewma_z", alpha=0.01).params()["alpha"] == 0.01


def test_unknown_detector_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="seasonal_z"):
        make_detector("holt")


@pytest.mark.parametrize("name", ["ewma_z", "seasonal_z"])
def test_spike_scores_far_above_the_noise_before_it(name):
    det = make_detector(name)
    before = run(det, noise(3000))
    spike = det.score_one({"value": 120.0}, t=3000 * STEP)
    assert max(before[100:]) < 6
    assert spike > 3 * max(before[100:])


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scores_are_zero_during_warm_up(name):
    det = make_detector(name)
    scores = run(det, [1.0, 100.0, -50.0, 1e6] * 5)
    assert scores == [0.0] * 20


def test_level_shift_scores_high_at_the_shift_then_low_once_adopted():
    det = SeasonalZScore(refractory=0)  # no alarm damping: what is measured is adoption
    before = run(det, noise(3000, level=100.0))
    after = run(det, noise(3000, level=110.0, seed=8), t0=3000 * STEP)
    assert after[0] > 8
    assert max(before[100:]) < 6
    assert sum(after[2500:]) / 500 < 2  # the new level is the baseline now
    assert abs(det.baseline - 110.0) < 1.0


def test_anomalous_points_barely_move_the_baseline():
    det = SeasonalZScore()
    run(det, noise(3000, level=100.0))
    run(det, [1000.0], t0=3000 * STEP)
    assert abs(det.baseline - 100.0) < 0.003 * 900 + 0.5


def test_alarm_starts_a_refractory_period_that_damps_the_burst_after_it():
    det = SeasonalZScore(refractory=50)
    run(det, noise(3000))
    burst = run(det, [130.0] * 60, t0=3000 * STEP)
    assert burst[0] > 6
    assert burst[1:51] == [0.0] * 50
    assert burst[51] > 0


def test_slow_leak_raises_the_score_above_anything_seen_before_it():
    det = SeasonalZScore()
    before = run(det, noise(3000, level=100.0))
    leak = [v + 0.02 * i for i, v in enumerate(noise(3000, level=100.0, seed=9))]
    during = run(det, leak, t0=3000 * STEP)
    assert max(during) >= det.alarm > max(before[100:])


def test_daily_cycle_is_not_anomalous_but_a_daytime_value_at_night_is():
    step = 300.0  # a 5-minute interval, as in NAB: 288 samples a day
    rng = random.Random(3)
    series = [50 + 30 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(288 * 7)]
    det = SeasonalZScore()
    scores = run(det, series, step=step)
    night = 288 * 7 + 216  # the trough of the sine, value about 20
    anomaly = det.score_one({"value": 80.0}, t=night * step)  # the daily peak's level
    assert max(scores[288 * 5:]) < 6
    assert anomaly > 6
    # The flat baseline cannot tell: 80 is within the range it has seen every day.
    flat = EWMAZScore()
    run(flat, series, step=None)
    assert flat.score_one({"value": 80.0}) < anomaly / 3


def test_constant_series_scores_zero_and_a_change_then_scores_high():
    det = SeasonalZScore()
    scores = run(det, [42.0] * 2000)
    assert all(s == 0.0 for s in scores)
    tiny = run(det, [42.0 + 1e-9 * (i % 2) for i in range(100)], t0=2000 * STEP)
    assert all(math.isfinite(s) and s < 1e-3 for s in tiny)
    assert det.score_one({"value": 50.0}, t=2100 * STEP) > 100


def test_constant_zero_series_does_not_divide_by_zero():
    det = SeasonalZScore()
    scores = run(det, [0.0] * 500)
    jump = det.score_one({"value": 1.0}, t=500 * STEP)
    assert scores == [0.0] * 500
    assert math.isfinite(jump) and jump > 100


def test_counter_reset_scores_high_once_and_the_detector_recovers():
    # Counters reach detectors as rates (deltas over the scrape interval); a naive delta
    # across a reset is one hugely negative rate, then the rate is normal again.
    rng = random.Random(5)
    counter, counters = 1e9, []
    for i in range(6001):
        counter = 0.0 if i == 3000 else counter + STEP * (10 + rng.random())
        counters.append(counter)
    rates = [(b - a) / STEP for a, b in zip(counters, counters[1:])]
    det = SeasonalZScore(refractory=0)
    scores = run(det, rates)
    reset = 2999
    assert rates[reset] < -1e6
    assert scores[reset] > 1000 * max(scores[100:reset])
    assert all(math.isfinite(s) for s in scores)
    assert max(scores[reset + 1000:]) < 6  # the one bad sample did not wreck the baseline
    assert abs(det.baseline - 10.5) < 0.5


def test_non_finite_values_score_zero_and_are_not_learned():
    det = SeasonalZScore()
    run(det, noise(1000))
    baseline = det.baseline
    for bad in (math.nan, math.inf, None):
        assert det.score_one({"value": bad}, t=1000 * STEP) == 0.0
        det.learn_one({"value": bad}, t=1000 * STEP)
    assert det.baseline == baseline
    assert det.score_one({"value": 100.0}, t=1001 * STEP) < 6


def test_time_can_be_given_in_the_sample_instead_of_as_an_argument():
    a, b = SeasonalZScore(), SeasonalZScore()
    series = daily(2 * DAY)
    by_arg = run(a, series)
    by_key = []
    for i, v in enumerate(series):
        x = {"value": v, "t": i * STEP}
        by_key.append(b.score_one(x))
        b.learn_one(x)
    assert by_key == by_arg
    assert a.baseline == b.baseline


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_feature_key_is_configurable(name):
    det = make_detector(name, feature="cpu")
    scores = []
    for i, v in enumerate(noise(500) + [150.0] * 5):
        if i == 500:
            assert abs(det.baseline - 100.0) < 1.0
        scores.append(det.score_one({"cpu": v}, t=i * STEP))
        det.learn_one({"cpu": v}, t=i * STEP)
    assert max(scores[500:]) > 2 * max(scores[100:500])
    assert det.score_one({"value": 150.0}, t=505 * STEP) == 0.0  # no "cpu" key: not a sample


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_state_pickles_and_unpickles_to_the_same_subsequent_scores(name):
    det = make_detector(name)
    run(det, daily(DAY + 123))
    clone = pickle.loads(pickle.dumps(det))
    tail = daily(DAY, seed=11) + [500.0]
    assert run(clone, tail, t0=(DAY + 123) * STEP) == run(det, tail, t0=(DAY + 123) * STEP)
    assert clone.params() == det.params()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_pickled_state_stays_under_one_kib_after_100k_points(name):
    det = make_detector(name)
    run(det, daily(100_000))
    assert len(pickle.dumps(det)) < 1024


def write_series(path: Path, rows: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(rows) + "\n")


def test_replay_writes_scores_with_the_right_columns_and_a_summary(tmp_path):
    data, out = tmp_path / "data", tmp_path / "out"
    stamps = [f"2024-01-01 {h:02d}:{m:02d}:00" for h in range(10) for m in range(0, 60, 5)]
    values = noise(len(stamps))
    values[100] = 200.0
    write_series(data / "cat" / "one.csv", ["timestamp,value"] + [f"{s},{v}" for s, v in zip(stamps, values)])
    write_series(data / "cat" / "two.csv", ["timestamp,value", "2024-01-01 00:00:00,1"])
    summary = replay(data, out, summary_json=tmp_path / "summary.json")

    with (out / "cat" / "one.csv").open() as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["timestamp", "value", "anomaly_score"]
    assert len(rows) == len(stamps) + 1
    assert [r[0] for r in rows[1:]] == stamps
    scores = [float(r[2]) for r in rows[1:]]
    assert max(range(len(scores)), key=scores.__getitem__) == 100
    assert (out / "cat" / "two.csv").exists()
    assert summary["files"] == 2 and summary["points"] == len(stamps) + 1
    assert summary["detector"] == DEFAULT_DETECTOR
    assert summary["parameters"] == make_detector().params()
    assert 0 < summary["state_bytes_mean"] <= summary["state_bytes_max"] < 1024
    assert summary["points_per_s"] > 0
    assert (tmp_path / "summary.json").read_text().count('"points_per_s"') == 1


def test_replay_names_the_file_and_line_of_an_unparsable_value(tmp_path):
    data = tmp_path / "data"
    write_series(data / "cat" / "bad.csv",
                 ["timestamp,value", "2024-01-01 00:00:00,1.0", "2024-01-01 00:05:00,abc"])
    with pytest.raises(ReplayError, match=r"bad\.csv:3: bad value 'abc'") as info:
        replay(data, tmp_path / "out")
    assert isinstance(info.value, KubepulseModelError)


def test_replay_names_the_file_of_a_missing_column(tmp_path):
    data = tmp_path / "data"
    write_series(data / "cat" / "cols.csv", ["time,value", "2024-01-01 00:00:00,1.0"])
    with pytest.raises(ReplayError, match=r"cols\.csv:1: missing column\(s\) timestamp"):
        replay(data, tmp_path / "out")


# -- SeasonalLikelihood: the default; its scale is "standard deviations of the recent
#    mean surprise", with NAB's best single threshold about 2.4 -----------------------

LIK = 2.5  # the threshold these tests hold the likelihood scores to


def test_likelihood_reports_a_level_shift_at_its_onset_and_not_while_it_is_adopted():
    det = SeasonalLikelihood()
    before = run(det, noise(3000, level=100.0))
    after = run(det, noise(3000, level=110.0, seed=8), t0=3000 * STEP)
    assert max(before) < LIK
    assert max(after[:3]) > LIK
    onset = next(i for i, s in enumerate(after) if s > LIK)
    assert max(after[onset + 10:onset + 300]) == 0.0  # one incident, one report
    assert abs(det.baseline - 110.0) < 1.0


def test_likelihood_weighs_an_isolated_outlier_less_than_a_short_burst_and_spike_sets_a_floor():
    det, spiky = SeasonalLikelihood(), SeasonalLikelihood(spike=20.0)
    for d in (det, spiky):
        run(d, noise(3000))
    one = det.score_one({"value": 150.0}, t=3000 * STEP)
    burst = run(det, [150.0] * 5, t0=3000 * STEP)
    assert one < max(burst) / 1.5 and max(burst) > LIK
    assert spiky.score_one({"value": 150.0}, t=3000 * STEP) == pytest.approx(max(one, 50 / 20), rel=0.1)
    assert spiky.score_one({"value": 300.0}, t=3000 * STEP) == pytest.approx(200 / 20, rel=0.1)


def test_likelihood_scores_are_comparable_on_gaussian_and_heavy_tailed_noise():
    # The point of the likelihood step: the noise of a bursty series must not look
    # more anomalous than that of a quiet gauge, or one threshold cannot serve both.
    rng = random.Random(4)
    heavy = [rng.lognormvariate(0.0, 1.0) * 10 for _ in range(6000)]
    gauss_max = max(run(SeasonalLikelihood(), noise(6000))[1000:])
    heavy_max = max(run(SeasonalLikelihood(), heavy)[1000:])
    assert heavy_max < 1.5 * gauss_max + 0.5
    assert max(run(SeasonalZScore(refractory=0), heavy)[1000:]) > 3 * max(run(SeasonalZScore(refractory=0), noise(6000))[1000:])


def test_likelihood_flags_a_slow_leak_above_everything_before_it():
    det = SeasonalLikelihood()
    before = run(det, noise(3000, level=100.0))
    leak = [v + 0.02 * i for i, v in enumerate(noise(3000, level=100.0, seed=9))]
    during = run(det, leak, t0=3000 * STEP)
    assert max(during) > LIK > max(before)


def test_likelihood_ignores_the_daily_cycle_but_flags_daytime_values_at_night():
    step = 300.0
    rng = random.Random(3)
    series = [50 + 30 * math.sin(2 * math.pi * i / 288) + rng.gauss(0, 1) for i in range(288 * 7)]
    det = SeasonalLikelihood()
    scores = run(det, series, step=step)
    night = run(det, [80.0] * 6, t0=(288 * 7 + 210) * step, step=step)  # the peak's level in the trough
    assert max(scores[288 * 5:]) < LIK
    assert max(night) > LIK


def test_likelihood_on_a_constant_series_is_zero_until_it_changes():
    det = SeasonalLikelihood()
    scores = run(det, [42.0] * 2000)
    assert scores == [0.0] * 2000
    assert max(run(det, [50.0] * 3, t0=2000 * STEP)) > LIK


def test_likelihood_counter_reset_is_one_event_and_the_detector_recovers():
    rng = random.Random(5)
    rates = [10 + rng.random() for _ in range(6000)]
    rates[3000] = -1e7  # a naive delta across a counter reset
    det = SeasonalLikelihood()
    scores = run(det, rates)
    assert all(math.isfinite(s) for s in scores)
    assert max(scores[3000:3010]) > LIK > max(scores[100:3000])
    assert max(scores[3500:]) < LIK
    assert abs(det.baseline - 10.5) < 0.5


def test_likelihood_scores_a_new_series_soon_after_warm_up():
    # The prior stands in for the series' own history, so a pod that started five
    # minutes ago can already alarm (and steady noise does not).
    cpus = [1.0 + 0.01 * (i % 5) for i in range(40)]
    det = SeasonalLikelihood()
    scores = run(det, cpus)
    assert max(scores) < LIK
    assert det.score_one({"value": 5.0}, t=40 * STEP) > LIK


def test_likelihood_learning_without_scoring_gives_the_same_state_as_scoring_first():
    # learn_one reuses score_one's arithmetic; it must not depend on score_one being called.
    series = daily(3000) + [200.0] * 3 + daily(500, seed=4)
    a, b = SeasonalLikelihood(), SeasonalLikelihood()
    run(a, series)
    for i, v in enumerate(series):
        b.learn_one({"value": v}, t=i * STEP)
    assert pickle.dumps(a) == pickle.dumps(b)


def test_default_detector_is_the_seasonal_likelihood():
    assert DEFAULT_DETECTOR == "seasonal_lik"
    assert isinstance(make_detector(), SeasonalLikelihood)


def test_context_novelty_reports_familiar_values_in_a_new_order_before_point_surprise_does():
    # A sawtooth 0..5 that starts jumping 5, 0, 5, 0: no value is new, only their order.
    series = [float(i % 6) for i in range(3000)] + [5.0, 0.0] * 20
    ctx, lik = run(ContextLikelihood(), series), run(SeasonalLikelihood(), series)
    first = lambda scores: next(i for i, s in enumerate(scores[3000:]) if s > LIK)
    assert max(ctx[:3000]) < LIK
    assert first(ctx) <= 2 and first(lik) >= 8


def test_context_novelty_costs_steady_noise_only_a_little_margin_under_the_alert_threshold():
    # White noise visits every context early on; later new ones are rare, so the
    # novelty channel lifts the noise's highest score a little, not to an alarm at
    # the streams' default threshold of 4.
    values = noise(20000, seed=12)
    with_novelty = max(run(ContextLikelihood(), values)[500:])
    without = max(run(ContextLikelihood(novelty_weight=0.0), values)[500:])
    assert without == pytest.approx(max(run(SeasonalLikelihood(), values)[500:]))
    assert without <= with_novelty < without + 1.0 < 4.0


def test_context_likelihood_reports_a_level_shift_at_once_and_its_continuation_only_faintly():
    det = ContextLikelihood()
    before = run(det, noise(3000, level=100.0))
    after = run(det, noise(3000, level=110.0, seed=8), t0=3000 * STEP)
    assert max(before[100:]) < LIK < max(after[:3])
    onset = next(i for i, s in enumerate(after) if s > 4.0)
    assert onset <= 3
    # The new level's contexts trickle in as the range widens: faint reports,
    # below the onset and under the alert threshold.
    assert max(after[onset + 10:]) < 4.0 < max(after[:10])
    assert abs(det.baseline - 110.0) < 1.0


def test_context_likelihood_learning_without_scoring_gives_the_same_state_as_scoring_first():
    series = daily(3000) + [200.0] * 3 + daily(500, seed=4)
    a, b = ContextLikelihood(), ContextLikelihood()
    run(a, series)
    for i, v in enumerate(series):
        b.learn_one({"value": v}, t=i * STEP)
    assert pickle.dumps(a) == pickle.dumps(b)


def test_context_likelihood_rejects_a_context_space_too_big_for_its_state():
    with pytest.raises(ValueError, match="levels \\*\\* context"):
        ContextLikelihood(levels=10, context=4)


def test_context_likelihood_with_no_warm_up_learns_its_range_from_the_first_sample():
    det = ContextLikelihood(warmup=0)
    scores = run(det, noise(2000) + [130.0] * 5)
    assert all(math.isfinite(s) for s in scores)
    assert det._lo < 97.0 and det._hi >= 130.0


# -- frozen reference scores: speed work must not change a single score ----------------------

REFERENCE = Path(__file__).parent / "data" / "detector_scores.json"


def reference_series(n: int = 5000, *, seed: int = 2024) -> list[tuple[float, float | None, str]]:
    """(value, t, how) rows covering every path: cycle, noise, spike, shift, non-finite, no time.

    ``how`` is ``"both"`` (score then learn), ``"learn"`` (learn without scoring first)
    or ``"t_in_x"`` (time given in the sample).  Values are rounded to 4 decimals so
    the series does not depend on the last bit of the platform's sin().
    """
    rng = random.Random(seed)
    step = 60.0  # 5k points span 3.5 days, so the time-of-day model takes over
    rows: list[tuple[float, float | None, str]] = []
    for i in range(n):
        v = 50 + 20 * math.sin(2 * math.pi * i * step / 86400) + rng.gauss(0, 2)
        v += 40 if i in (2500, 4100) else 0  # isolated spikes
        v += 15 if 3500 <= i < 4500 else 0  # a level shift that ends
        v = round(v, 4)
        t: float | None = 1.7e9 + i * step
        how = "both"
        if i in (1000, 3600):
            v = math.nan
        elif i in (1001, 3601):
            v = math.inf
        elif i % 97 == 0:
            how = "learn"
        elif i % 89 == 0:
            how = "t_in_x"
        elif 4700 <= i < 4760:
            t = None  # a stretch without timestamps: the flat model judges
        rows.append((v, t, how))
    return rows


def reference_scores(name: str) -> dict:
    """Scores of every step of `reference_series` (None where not scored) and the final baseline."""
    det = make_detector(name)
    scores: list[float | None] = []
    for v, t, how in reference_series():
        if how == "learn":
            det.learn_one({"value": v}, t=t)
            scores.append(None)
            continue
        x = {"value": v, "t": t} if how == "t_in_x" else {"value": v}
        kw = {} if how == "t_in_x" else {"t": t}
        scores.append(det.score_one(x, **kw))
        det.learn_one(x, **kw)
    return {"scores": scores, "baseline": det.baseline}


def record_reference_scores() -> None:
    """Rewrite the fixture (only after a deliberate change of what detectors compute)."""
    REFERENCE.parent.mkdir(parents=True, exist_ok=True)
    data = {name: reference_scores(name) for name in sorted(DETECTORS)}
    REFERENCE.write_text(json.dumps(data, separators=(",", ":")) + "\n")


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_scores_match_the_frozen_reference_to_the_last_digits(name):
    expected = json.loads(REFERENCE.read_text())[name]
    got = reference_scores(name)
    assert len(got["scores"]) == len(expected["scores"]) == 5000
    assert sum(1 for s in expected["scores"] if s) > 100  # the fixture holds real scores
    mismatches = [
        (i, g, e) for i, (g, e) in enumerate(zip(got["scores"], expected["scores"]))
        if (g is None) != (e is None) or (g is not None and not math.isclose(g, e, rel_tol=1e-12, abs_tol=1e-12))
    ]
    assert mismatches[:5] == []
    assert math.isclose(got["baseline"], expected["baseline"], rel_tol=1e-12)


@pytest.mark.parametrize("cls", [SeasonalLikelihood, ContextLikelihood])
def test_learn_one_ignores_a_memo_of_another_value_or_time_and_never_uses_one_twice(cls):
    # The streams reuse one dict for every sample, so learn_one must check the value and
    # time, not the dict, before reusing what score_one computed.
    series = daily(1200)
    a, b = cls(), cls()
    run(a, series)
    run(b, series)
    t = 1200 * STEP
    x = {"value": 50.0}
    a.score_one(x, t=t)
    x["value"] = 90.0  # changed after scoring: learn the new value
    a.learn_one(x, t=t)
    a.score_one({"value": 60.0}, t=t + STEP)
    a.learn_one({"value": 60.0}, t=t + 2 * STEP)  # another time
    a.learn_one({"value": 60.0}, t=t + 2 * STEP)  # the same sample twice: the memo is gone
    b.learn_one({"value": 90.0}, t=t)
    b.learn_one({"value": 60.0}, t=t + 2 * STEP)
    b.learn_one({"value": 60.0}, t=t + 2 * STEP)
    assert pickle.dumps(a) == pickle.dumps(b)
    assert a.score_one({"value": 55.0}, t=t + 3 * STEP) == b.score_one({"value": 55.0}, t=t + 3 * STEP)


def test_context_likelihood_survives_a_jump_far_outside_a_tiny_range():
    # (v - lo) / span overflows to inf here; it used to reach int() and raise OverflowError.
    for warmup in (30, 100, 0):  # the jump after warm-up, during it, and with none
        det = ContextLikelihood(warmup=warmup)
        scores = run(det, [0.0, 1e-300] * 40 + [1e200, 0.0])
        assert all(math.isfinite(s) for s in scores)
        assert det._hi == 1e200


@pytest.mark.parametrize("rate, offset", [(0.003, 0), (0.002, 50), (0.005, 0), (0.1, 0), (0.3, 7), (1 / 3, 0)])
def test_steady_rate_threshold_is_where_the_rate_test_starts_to_hold_for_good(rate, offset):
    from models.detectors._kernel import steady_from as _steady_from

    def floor_reached(k: int) -> bool:  # SeasonalLikelihood's test for its long-run rate
        return 1.0 / (k + offset) < rate

    k0 = _steady_from(floor_reached, rate, offset)
    assert k0 < 10_000
    assert all(floor_reached(k) for k in range(k0, k0 + 5000))
    assert k0 == 1 or not floor_reached(k0 - 1)
    n0 = _steady_from(lambda n: not n * rate < 1.0, rate)  # SeasonalZScore's level rate
    assert all(not n * rate < 1.0 for n in range(n0, n0 + 5000))
    assert n0 == 1 or (n0 - 1) * rate < 1.0


def test_odd_rates_keep_the_original_rate_test_on_every_sample():
    from models.detectors._kernel import NEVER as _NEVER, steady_from as _steady_from

    for rate in (0.0, -0.1, math.nan, math.inf, 5e-324):
        assert _steady_from(lambda k: True, rate) == _NEVER
    det = SeasonalZScore(alpha=0.0)  # a level that never moves past the plain average
    run(det, noise(200))
    assert det._n_steady == _NEVER and abs(det.baseline - 100.0) < 0.5


# -- compact exact state: to_bytes / detector_from_bytes ----------------------------------------

from models.detectors import detector_from_bytes  # noqa: E402
from models.errors import DetectorStateError  # noqa: E402

CUSTOM = {
    "ewma_z": {"alpha": 0.01, "warmup": 5, "feature": "cpu"},
    "seasonal_z": {"bins": 12, "refractory": 50, "resolution": 0.5, "feature": "cpu"},
    "seasonal_lik": {"short": 0.2, "prior_n": 10, "resolution": 1.0, "spike": 5.0, "feature": "cpu"},
    "seasonal_ctx": {"levels": 4, "context": 4, "bins": 48, "feature": "cpu"},
}


@pytest.mark.parametrize("name", sorted(DETECTORS))
@pytest.mark.parametrize("custom", [False, True], ids=["defaults", "custom"])
def test_state_bytes_reload_to_a_detector_that_scores_exactly_as_the_original(name, custom):
    params = CUSTOM[name] if custom else {}
    feature = params.get("feature", "value")
    a = make_detector(name, **params)
    history = daily(DAY + 77) + [0.0, math.nan, 500.0]
    for i, v in enumerate(history):
        a.score_one({feature: v}, t=i * STEP)
        a.learn_one({feature: v}, t=i * STEP)
    data = a.to_bytes()
    b = detector_from_bytes(data)
    assert type(b) is type(a) and b.params() == a.params()
    assert b.to_bytes() == data  # nothing lost, nothing added
    assert b.baseline == a.baseline
    tail = daily(DAY // 2, seed=5) + [900.0, 50.0, -3.0]
    t0 = len(history) * STEP
    got = [(a.score_one({feature: v}, t=t0 + i * STEP), b.score_one({feature: v}, t=t0 + i * STEP),
            a.learn_one({feature: v}, t=t0 + i * STEP), b.learn_one({feature: v}, t=t0 + i * STEP))
           for i, v in enumerate(tail)]
    assert [x for x, *_ in got] == [y for _, y, *_ in got]
    assert max(x for x, *_ in got) > 1.0  # the comparison covers real scores, not only zeros
    assert a.to_bytes() == b.to_bytes()


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_state_bytes_stay_small_and_leave_defaults_out(name):
    det = make_detector(name)
    run(det, daily(20_000))
    size = len(det.to_bytes())
    assert size <= 1024
    if name in ("seasonal_lik", "seasonal_z", "ewma_z"):
        assert size <= 300
    assert det.to_bytes()[:3] == bytes((det.TAG, det.VERSION, 0))  # tag, version, "parameters are the defaults"
    custom = make_detector(name, **CUSTOM[name])
    assert custom.to_bytes()[2] == 1 and b"cpu" in custom.to_bytes()  # the parameters follow the header


def test_default_detector_state_is_under_300_bytes_and_pickles_through_it():
    det = make_detector()
    run(det, daily(3 * DAY))
    data = det.to_bytes()
    assert len(data) <= 300
    blob = pickle.dumps(det)
    assert data in blob and len(blob) < len(data) + 100
    assert pickle.loads(blob).to_bytes() == data


def test_reading_state_that_is_not_a_detector_names_the_problem():
    good = make_detector().to_bytes()
    with pytest.raises(DetectorStateError, match="unknown detector tag 99"):
        detector_from_bytes(bytes((99,)) + good[1:])
    with pytest.raises(DetectorStateError, match="version 7"):
        detector_from_bytes(good[:1] + bytes((7,)) + good[2:])
    with pytest.raises(DetectorStateError, match="corrupt seasonal_lik state"):
        detector_from_bytes(good[:-1])
    with pytest.raises(DetectorStateError, match="shorter than its header"):
        detector_from_bytes(b"\x03")
    with pytest.raises(DetectorStateError, match="corrupt seasonal_lik state"):
        detector_from_bytes(good[:2] + b"\x01" + good[3:])  # says parameters follow, but they do not
    bad_mask = good[:2] + b"\x01" + struct.pack("<I", 1 << 20) + good[3:]  # names a 21st parameter
    with pytest.raises(DetectorStateError, match="names more than 16 parameters"):
        detector_from_bytes(bad_mask)
    assert isinstance(DetectorStateError("x"), KubepulseModelError)


def test_only_the_parameters_that_differ_from_the_defaults_are_stored():
    plain = make_detector("seasonal_lik")
    two = make_detector("seasonal_lik", spike=5.0, resolution=1.0)
    assert len(two.to_bytes()) == len(plain.to_bytes()) + 4 + 2 * 8  # the mask and two doubles
    assert detector_from_bytes(two.to_bytes()).params() == two.params()


# -- resolution: the error scale's floor in the series' unit ----------------------------------------


def errors_counter(n: int, *, seed: int = 9, p: float = 0.0005) -> list[float]:
    """Errors per second of an interface at a 15 s scrape: 0, and a single dropped packet now and then."""
    rng = random.Random(seed)
    return [1 / STEP if rng.random() < p else 0.0 for _ in range(n)]


def test_a_single_error_on_an_almost_always_zero_counter_is_not_an_anomaly_given_its_resolution():
    series = errors_counter(4 * DAY)
    blips = sum(1 for v in series if v)
    assert blips >= 5  # the series does have its blips
    plain = run(SeasonalLikelihood(), series)
    assert max(plain) > 7  # without a unit, one error in 15 s is an infinite surprise
    quiet = run(SeasonalLikelihood(resolution=1.0), series)
    assert max(quiet) < 1.0
    storm = run(SeasonalLikelihood(resolution=1.0), series + [150.0] * 10)
    assert max(storm[len(series):]) > 6  # 150 errors/s is still far outside


def test_resolution_zero_leaves_every_score_as_it_was():
    series = daily(DAY) + [200.0] + daily(200, seed=4)
    assert run(SeasonalLikelihood(resolution=0.0), series) == run(SeasonalLikelihood(), series)
    with pytest.raises(ValueError, match="resolution >= 0"):
        SeasonalLikelihood(resolution=-1.0)


@pytest.mark.parametrize("module", ["models.detectors", "models.detectors._kernel", "models.detectors.ewma",
                                    "models.detectors.seasonal", "models.detectors.likelihood",
                                    "models.detectors.context", "models.replay", "streams.scoring"])
def test_the_docstring_examples_of_the_detector_modules_hold(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _fused_stream(rng: random.Random, n: int) -> list[float]:
    """Noise with a daily cycle, jumps far outside it, constant stretches, zeros, nan and inf."""
    out = []
    for i in range(n):
        r = rng.random()
        if r < 0.01:
            out.append(math.nan if r < 0.004 else math.inf)
        elif r < 0.03:
            out.append(rng.choice((0.0, 1e6, -5e3)))
        elif (i // 400) % 3 == 2:
            out.append(42.0)
        else:
            out.append(100.0 + 30.0 * math.sin(i * STEP * 2 * math.pi / 86400) + rng.gauss(0, 2))
    return out


_FUSED_PARAMS = [{}, {"spike": 5.0, "resolution": 0.001}, {"warmup": 0}, {"warmup": 1, "bins": 7}]


@pytest.mark.parametrize("name,params", [(name, params) for name in sorted(DETECTORS) for params in _FUSED_PARAMS
                                         if set(params) <= set(DETECTORS[name]._PARAMS)])
@pytest.mark.parametrize("above", [2.5, 0.0, -1.0])
def test_score_learn_gives_the_scores_and_state_of_score_one_then_learn_one_bit_for_bit(name, params, above):
    # The worker's fused step (streams.pipeline) must be the protocol's two calls, to the last bit: a score
    # above `above` comes back before learning, and the caller then reads baseline and calls learn_one.
    values = _fused_stream(random.Random(5), 3000)
    ref, fused = make_detector(name, **params), make_detector(name, **params)
    for i, v in enumerate(values):
        t = 1_700_000_000.0 + i * STEP
        want = ref.score_one({"value": v}, t=t)
        want_baseline = ref.baseline
        ref.learn_one({"value": v}, t=t)
        got = fused.score_learn(v, t, above)
        assert struct.pack("<d", got) == struct.pack("<d", want), (i, v)
        if got > above:
            got_baseline = fused.baseline
            assert got_baseline == want_baseline or (math.isnan(got_baseline) and math.isnan(want_baseline))
            fused.learn_one({"value": v}, t=t)
        assert fused.to_bytes() == ref.to_bytes(), (i, v)
