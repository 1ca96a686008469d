"""How the benchmarks compute their figures (bench/methods.py, bench/run_all.py): pure, no Kafka."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run_all
from methods import Sample, drain, median, percentile


def test_a_percentile_is_the_value_at_the_nearest_rank() -> None:
    """p99 of 1..100 is 99: the 99th value, not the maximum (index ⌊0.99·n⌋ gave 100)."""
    values = [float(v) for v in range(100, 0, -1)]
    assert percentile(values, 0.99) == 99.0
    assert percentile(values, 0.95) == 95.0
    assert percentile(values, 1.0) == 100.0
    assert percentile([float(v) for v in range(1, 50_001)], 0.99) == 49_500.0
    assert percentile([7.0], 0.99) == 7.0


def test_the_median_of_an_even_count_is_between_the_middle_two() -> None:
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5
    assert median([3.0, 1.0, 2.0]) == 2.0


def test_nothing_measured_has_no_percentile() -> None:
    assert percentile([], 0.99) is None
    assert median([]) is None


def test_what_never_came_counts_as_infinitely_late() -> None:
    """95 of 100 mails arrived: their own p99 would look fine, but the p99 of all 100 is
    among the missing; the median is not."""
    arrived = [0.1] * 95
    assert percentile(arrived, 0.99) == 0.1
    assert percentile(arrived, 0.99, total=100) is None
    assert percentile(arrived, 0.95, total=100) == 0.1
    assert median(arrived, total=100) == 0.1
    assert percentile(arrived, 0.99, total=95) == 0.1


def steady(
    rate: float, items: int, interval: float, offset: float, cpu_per_item: float
) -> list[Sample]:
    """Samples every `interval` of a process doing `rate` items/s from t=1, first sample at
    `offset`; the count is capped at `items`; CPU grows with the items done."""
    samples: list[Sample] = []
    t = offset
    while True:
        done = min(items, max(0, int((t - 1.0) * rate)))
        samples.append((t, 1000 + done, (done * cpu_per_item,)))
        if done >= items:
            return samples
        t += interval


@pytest.mark.parametrize("offset", [0.0, 0.013, 0.029, 0.041])
def test_a_drain_sampled_at_one_interval_gives_its_rate(offset: float) -> None:
    """Whatever the phase of the sampling, the rate is within one interval of the truth."""
    figures = drain(steady(1000.0, 5000, 0.05, offset, 0.0005), baseline=1000, items=5000)
    assert figures.rate == pytest.approx(1000.0, rel=0.05 / 5)
    assert figures.steady_rate == pytest.approx(1000.0, rel=0.05 / 4.5)


def test_cpu_per_item_divides_by_the_items_counted_between_its_samples() -> None:
    """The sample after the first tenth shows more than a tenth done: the CPU read there
    covers fewer items than nine tenths, and is divided by those."""
    samples: list[Sample] = [
        (0.0, 0, (0.0,)),
        (0.1, 300, (0.3,)),  # the tenth of 1,000 passed, 300 done
        (0.2, 700, (0.7,)),
        (0.3, 1000, (1.0,)),
    ]
    figures = drain(samples, baseline=0, items=1000)
    assert figures.cpu_per_item_steady == pytest.approx((0.001,))  # 0.7 s / 700, not / 900
    assert figures.cpu_per_item == pytest.approx((0.001,))  # 1.0 s / 1,000 after the first
    assert figures.cpu_share == pytest.approx((0.7 / 0.2,))


def write(results: Path, name: str, data: dict[str, object]) -> None:
    (results / f"{name}.json").write_text(json.dumps(data))


def e2e(missing: int) -> dict[str, object]:
    phase = {"p99_ms": 90.0, "mails_missing": missing}
    return {
        "at": "2026-11-22T16:50:00+00:00",
        "phases": [phase, phase, phase],
        "nudge": {"p50_ms": 50.0, "p95_ms": 80.0, "p99_ms": 90.0, "mails_missing": missing},
        "baseline_raw_kafka": {"p50_ms": 6.0, "p95_ms": 7.0, "p99_ms": 8.0},
    }


def rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, dict[str, object]]:
    monkeypatch.setattr(run_all, "RESULTS", tmp_path)
    summary = run_all.summarize(0.0, {})
    return {str(r["figure"]): r for r in summary["rows"]}


def test_a_latency_target_is_not_met_while_mails_are_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """p99 90 ms < 250 ms, but mails never arrived: bench_e2e says "NOT met", so does the table."""
    write(tmp_path, "e2e", e2e(missing=3))
    found = rows(tmp_path, monkeypatch)
    for figure in ("e2e p99 at the 1st rate (250/s)", "e2e order → mail p99 (1,000/s)"):
        assert found[figure]["meets_target"] is False
    write(tmp_path, "e2e", e2e(missing=0))
    found = rows(tmp_path, monkeypatch)
    assert found["e2e order → mail p99 (1,000/s)"]["meets_target"] is True


def test_each_target_is_compared_in_its_direction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Throughput at or above its target, sizes and latencies below theirs."""
    write(
        tmp_path,
        "engine",
        {"median": {"events_per_second": 28_000, "idle_state_bytes_mean": 578.0}},
    )
    write(
        tmp_path,
        "processor",
        {
            "throughput": {"nudge_events_per_second": 14_593, "ceiling_events_per_second": 65_293},
            "timers": {"lag_p99_seconds": 6.0},
        },
    )
    write(
        tmp_path,
        "sender",
        {"nudge": {"mails_per_second": 1_410}, "ceiling_mails_per_second": 1_700},
    )
    found = rows(tmp_path, monkeypatch)
    assert found["nudge simulate throughput"]["meets_target"] is False
    assert found["state per idle user (mean)"]["meets_target"] is True
    assert found["processor throughput, 1 worker"]["meets_target"] is False  # 0.22 < 0.5
    assert found["processor throughput, 1 worker"]["ratio"] == 0.22
    assert found["timers: p99 lag due → command"]["meets_target"] is False
    assert found["sender mails/s, 1 process"]["meets_target"] is True  # 1,410 >= 0.8 x 1,700


def test_the_table_dates_a_result_by_its_own_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A copied file has a new mtime: the run's own `at` is the date shown."""
    write(tmp_path, "e2e", e2e(missing=0))
    found = rows(tmp_path, monkeypatch)
    assert found["e2e order → mail p99 (1,000/s)"]["source"] == "from 2026-11-22T16:50"


def test_a_drain_too_short_to_time_says_so() -> None:
    with pytest.raises(ValueError, match="too few items"):
        drain([(0.0, 0, (0.0,)), (0.05, 100, (0.1,))], baseline=0, items=100)
