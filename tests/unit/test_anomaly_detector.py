"""The anomaly detector (flows/anomaly_detector.py) on small made-up series, and the calibration
benchmark (bench/anomalies.py) on a tiny history: the bench's targets hold here too."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from bench.anomalies import evaluate, generate
from flows.anomaly_detector import DetectorSettings, Observation, Verdict, scan

MONDAY = datetime(2024, 1, 1, 2, 0, tzinfo=UTC)
WEEK = np.array([1.1, 1.0, 1.0, 1.0, 1.0, 0.6, 0.5])  # Monday catches up, a quiet weekend


def daily(values: np.ndarray | list[float], start: datetime = MONDAY) -> list[Observation]:
    return [Observation(start + timedelta(days=day), float(value)) for day, value in enumerate(values)]


def weekly_volumes(days: int = 120, trend: float = 0.0, seed: int = 1) -> np.ndarray:
    """Rows per daily load: weekly seasonality, 5% noise, an optional compound daily trend."""
    rng = np.random.default_rng(seed)
    day = np.arange(days)
    return 1000 * (1 + trend) ** day * WEEK[day % 7] * (1 + 0.05 * rng.standard_normal(days))


def flagged(verdicts: list[Verdict]) -> list[int]:
    return [index for index, verdict in enumerate(verdicts) if verdict.flagged]


@pytest.mark.parametrize("trend", [0.0, 0.006, -0.004, 0.02, -0.01])  # a new table may grow 2% a day
def test_a_weekly_seasonal_noisy_series_with_or_without_trend_gives_no_flags(trend: float) -> None:
    verdicts = scan(daily(weekly_volumes(trend=trend)))

    assert flagged(verdicts) == []
    assert [verdict.level for verdict in verdicts].count("ok") == 120 - DetectorSettings().min_history


def test_a_40_percent_drop_is_a_fail_at_its_point() -> None:
    values = weekly_volumes()
    expected = values[100]
    values[100] *= 0.6

    verdicts = scan(daily(values))

    assert flagged(verdicts) == [100]
    drop = verdicts[100]
    assert drop.level == "fail" and drop.score is not None and drop.score < -DetectorSettings().fail_score
    assert drop.expected == pytest.approx(expected, rel=0.1)
    assert drop.lower is not None and drop.value < drop.lower


def test_the_point_under_test_is_not_in_its_own_baseline() -> None:
    values = weekly_volumes()
    spiked = values.copy()
    spiked[100] *= 3

    plain, judged = scan(daily(values))[100], scan(daily(spiked))[100]

    assert judged.level == "fail"
    assert (judged.expected, judged.lower, judged.upper) == (plain.expected, plain.lower, plain.upper)


def test_a_flagged_point_neither_hides_nor_widens_the_next_one() -> None:
    values = weekly_volumes()
    values[100:102] *= 0.6
    series = daily(values)

    verdicts = scan(series)
    as_if_absent = scan(series[:100] + series[101:])[100]  # the same point 101, never having seen 100

    assert flagged(verdicts) == [100, 101]
    after = verdicts[101]
    assert (after.expected, after.lower, after.upper) == (
        as_if_absent.expected,
        as_if_absent.lower,
        as_if_absent.upper,
    )


def test_a_level_shift_stops_alerting_after_relearn_after_points() -> None:
    values = weekly_volumes()
    values[80:] *= 1.5

    verdicts = scan(daily(values))

    assert flagged(verdicts) == [80, 81, 82]
    assert [index for index, verdict in enumerate(verdicts) if verdict.relearned] == [82]
    assert verdicts[90].expected == pytest.approx(values[90], rel=0.15)


def test_an_acknowledgement_accepts_the_shift_at_once() -> None:
    values = weekly_volumes()
    values[80:] *= 1.5
    series = daily(values)
    ack = series[80].at + timedelta(hours=3)  # `elt anomalies ack` after the first alert

    verdicts = scan(series, acknowledged=[ack])

    assert flagged(verdicts) == [80]
    assert verdicts[80].relearned


def test_an_acknowledgement_before_the_incident_does_not_accept_it() -> None:
    values = weekly_volumes()
    values[80:] *= 1.5
    series = daily(values)

    verdicts = scan(series, acknowledged=[series[70].at + timedelta(hours=1)])

    assert flagged(verdicts) == [80, 81, 82]


def test_an_hourly_series_has_hour_of_day_seasonality() -> None:
    rng = np.random.default_rng(3)
    hours = np.arange(24 * 12)
    night = (hours % 24) < 6  # the nightly dip: a quarter of the daytime volume
    values = 400 * np.where(night, 0.25, 1.0) * (1 + 0.05 * rng.standard_normal(len(hours)))
    noon = 24 * 10 + 12
    values[noon] *= 0.25  # a night's volume at noon
    start = datetime(2024, 3, 4, tzinfo=UTC)
    series = [Observation(start + timedelta(hours=hour), float(values[hour])) for hour in range(len(hours))]

    verdicts = scan(series)

    assert flagged(verdicts) == [noon]
    assert sum(verdict.level == "ok" and night[index] for index, verdict in enumerate(verdicts)) > 40


def test_direction_up_ignores_early_loads_and_flags_late_ones() -> None:
    rng = np.random.default_rng(4)
    gaps = 24 + 0.1 * rng.standard_normal(60)  # hours since the last load, a few minutes of jitter
    gaps[40], gaps[50] = 18.0, 31.0  # one load six hours early, one seven hours late
    series = daily(gaps)

    assert flagged(scan(series, DetectorSettings(direction="up"))) == [50]
    assert flagged(scan(series, DetectorSettings(direction="down"))) == [40]
    assert flagged(scan(series)) == [40, 50]


def test_nothing_is_judged_before_min_history() -> None:
    verdicts = scan(daily(weekly_volumes(days=40)), DetectorSettings(min_history=28))

    assert {verdict.level for verdict in verdicts[:28]} == {"learning"}
    assert all(verdict.expected is None and verdict.score is None for verdict in verdicts[:28])
    assert {verdict.level for verdict in verdicts[28:]} == {"ok"}
    assert scan([]) == []


def test_a_constant_zero_null_fraction_flags_a_real_burst_but_not_a_speck() -> None:
    zeros = [0.0] * 40

    assert flagged(scan(daily([*zeros, 0.0001, 0.0]))) == []
    burst = scan(daily([*zeros, 0.15]))[-1]
    assert burst.level == "fail" and burst.expected == 0.0


def test_replaying_a_prefix_gives_the_same_verdicts() -> None:
    values = weekly_volumes()
    values[60] *= 0.5
    values[90:] *= 1.4
    series = daily(values)

    assert scan(series[:95]) == scan(series)[:95]


def test_settings_refuse_nonsense() -> None:
    with pytest.raises(ValueError, match="direction"):
        DetectorSettings(direction="sideways")
    with pytest.raises(ValueError, match="warn_score"):
        DetectorSettings(warn_score=6, fail_score=4)


def test_the_calibration_benchmark_reaches_its_targets_on_a_tiny_history() -> None:
    detector, naive = evaluate(generate(tables=4, loads=180))

    assert sum(detector.injected.values()) == 32
    assert detector.recall() >= 0.9
    assert detector.false_positive_rate() <= 0.01
    assert naive.recall() < detector.recall()
