"""The instrumentation bench's verdict on issue 5's goal: the interval and its reading,
and the floors it compares canarytrace with.

The bench itself is not a test (its times depend on the machine); what it concludes
from its times is plain arithmetic, tested here, and so is what each variant records.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench_instrumentation.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_instrumentation", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_interval_holds_the_ratio_of_medians_and_narrows_with_agreeing_processes(
    bench: ModuleType,
) -> None:
    wide = bench.ratio_interval([60.0, 90.0, 75.0, 70.0, 100.0], [50.0, 55.0, 60.0, 45.0, 65.0])
    narrow = bench.ratio_interval([74.0, 75.0, 76.0, 75.0, 75.0], [54.0, 55.0, 56.0, 55.0, 55.0])
    assert wide is not None and narrow is not None
    assert wide[0] <= 75 / 55 <= wide[1]
    assert narrow[0] <= 75 / 55 <= narrow[1]
    assert narrow[1] - narrow[0] < (wide[1] - wide[0]) / 3


def test_identical_processes_give_a_point_interval(bench: ModuleType) -> None:
    assert bench.ratio_interval([66.0] * 4, [44.0] * 4) == pytest.approx((1.5, 1.5))


def test_interval_is_the_same_for_the_same_runs(bench: ModuleType) -> None:
    runs = ([80.0, 84.0, 91.0], [55.0, 57.0, 52.0])
    assert bench.ratio_interval(*runs) == bench.ratio_interval(*runs)


def test_the_drift_of_a_process_that_switches_nothing_on_is_taken_off_both_sides(
    bench: ModuleType,
) -> None:
    overheads, floors, drifts = [80.0] * 4, [50.0] * 4, [20.0] * 4
    assert bench.drift_free_ratio(overheads, floors, drifts) == pytest.approx(2.0)
    assert bench.ratio_interval(overheads, floors, drifts) == pytest.approx((2.0, 2.0))
    assert bench.drift_free_ratio(overheads, floors, []) == pytest.approx(1.6)


def test_paired_resampling_keeps_each_process_s_two_overheads_together(
    bench: ModuleType,
) -> None:
    # Each process is fast or slow as a whole, and canarytrace costs 1.3x the floor in all.
    floors = [40.0, 90.0, 55.0, 120.0, 70.0, 45.0]
    overheads = [1.3 * floor for floor in floors]
    paired = bench.ratio_interval(overheads, floors, paired=True)
    unpaired = bench.ratio_interval(overheads, floors)
    assert paired == pytest.approx((1.3, 1.3))
    assert unpaired is not None and unpaired[1] - unpaired[0] > 0.5


def test_a_floor_no_larger_than_the_drift_gives_no_ratio(bench: ModuleType) -> None:
    assert bench.drift_free_ratio([80.0] * 3, [20.0] * 3, [20.0] * 3) is None
    assert bench.ratio_interval([80.0] * 3, [20.0] * 3, [20.0] * 3) is None


def test_a_floor_that_is_not_positive_gives_no_interval(bench: ModuleType) -> None:
    assert bench.ratio_interval([10.0, 12.0], [0.0, 0.0]) is None


@pytest.mark.parametrize(
    ("interval", "verdict"),
    [
        ((1.1, 1.4), "met"),
        ((1.3, 1.5), "met"),
        ((1.4, 1.6), "on the line"),
        ((1.51, 1.9), "missed"),
        (None, "no floor"),
        ((-0.9, 1.2), "too noisy"),
        ((0.0, 1.4), "too noisy"),
    ],
)
def test_verdict_reads_the_whole_interval_against_the_goal(
    bench: ModuleType, interval: tuple[float, float] | None, verdict: str
) -> None:
    assert bench.GOAL == 1.5
    assert bench.goal_verdict(interval) == verdict


def _side_by_side_runs(by_hand: float, canarytrace: float, count: int) -> list[dict[str, object]]:
    scenario = {"bare (by hand)": by_hand, "canarytrace": canarytrace}
    return [{"openai": scenario, "heap_seed": seed} for seed in range(count)]


def test_saved_side_by_side_runs_are_pooled(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    first, second = tmp_path / "first.json", tmp_path / "second.json"
    bench._save(first, _side_by_side_runs(50.0, 65.0, 3))
    bench._save(second, _side_by_side_runs(50.0, 65.0, 2))
    bench.print_saved([first, second])
    out = capsys.readouterr().out
    assert "side by side, 5 processes" in out
    assert "1.30x [1.30-1.30]  met" in out


def test_loading_a_table_run_with_side_by_side_runs_is_refused(
    bench: ModuleType, tmp_path: Path
) -> None:
    paired, table = tmp_path / "paired.json", tmp_path / "table.json"
    bench._save(paired, _side_by_side_runs(50.0, 65.0, 1))
    bench._save(table, {"canarytrace": []})
    with pytest.raises(SystemExit, match="not both"):
        bench.print_saved([paired, table])


def test_a_file_that_is_not_a_saved_run_is_named(bench: ModuleType, tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("{half")
    with pytest.raises(SystemExit, match=r"broken\.json"):
        bench.print_saved([broken])


def _attribute_names(variant: str) -> dict[str, list[list[str]]]:
    """What `variant` records on the bench's calls, in a process of its own (a floor's
    wrapt patches are never taken off)."""
    command = [sys.executable, str(BENCH), "--attribute-names", variant]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    names: dict[str, list[list[str]]] = json.loads(done.stdout)
    return names


def test_the_floors_record_the_same_attributes_as_canarytrace_on_the_same_calls() -> None:
    """Issue 5's goal is "within 1.5x of a bare OTel span with the same attributes": a
    floor that records less than canarytrace (or more) would measure another goal."""
    ours = _attribute_names("canarytrace")
    assert set(ours) == {
        "openai",
        "openai stream",
        "anthropic",
        "anthropic stream",
        "async openai stream",
        "async anthropic",
    }
    assert all(len(spans) == 1 for spans in ours.values())  # one LLM span per call
    assert "openai.request.id" in ours["openai stream"][0]
    assert "anthropic.request.id" in ours["anthropic stream"][0]
    by_hand, constants, wrapt = (
        _attribute_names(variant)
        for variant in ("bare (by hand)", "bare (constants)", "bare (wrapt)")
    )
    assert by_hand == ours
    synchronous = {scenario: ours[scenario] for scenario in constants}
    assert constants == synchronous
    assert {scenario: wrapt[scenario] for scenario in constants} == synchronous
