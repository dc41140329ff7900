"""JSON inputs above `spill_calls` go through temporary Parquet parts: same frame, no leftovers.

Every test here forces the spilled path on a small input (`spill_calls` of a few calls,
small `chunk_bytes` so one file makes several parts) and compares it with the in-memory
path, which tests/analysis/test_load.py checks against the generated frame.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from canarytrace import attributes as A
from canarytrace.analysis import load as loader
from canarytrace.analysis import synth
from canarytrace.analysis.load import load, scan
from canarytrace.analysis.schema import CALLS_SCHEMA

SPILL = {"spill_calls": 40, "chunk_bytes": 16 * 1024}


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    scenario = synth.Scenario(users=150, seed=5, feedback_rate=0.5, outcome_rate=0.5)
    return synth.calls(synth.with_canary(scenario, error_rate=0.05))


@pytest.fixture
def scan_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    """The temporary folders the loader creates during the test (under a private $TMPDIR)."""
    made: list[Path] = []
    mkdtemp = tempfile.mkdtemp

    def recording_mkdtemp(*args: object, **kwargs: object) -> str:
        folder = mkdtemp(*args, **kwargs)  # type: ignore[call-overload]
        made.append(Path(folder))
        return folder

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "mkdtemp", recording_mkdtemp)
    return made


def _rotated(frame: pl.DataFrame, folder: Path) -> Path:
    """The frame's spans in three rotated files: calls in one, their records in later ones."""
    lines = synth.write_otlp(frame, folder / "all.jsonl", spans_per_request=16).read_text()
    lines_list = lines.splitlines(keepends=True)
    (folder / "all.jsonl").unlink()
    third = len(lines_list) // 3
    pieces = (lines_list[:third], lines_list[third : 2 * third], lines_list[2 * third :])
    for i, piece in enumerate(pieces):
        (folder / f"traces-{i}.jsonl").write_text("".join(piece))
    return folder


def test_the_spilled_path_gives_the_in_memory_frame(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "_CALLS_PER_BUCKET", 100)  # several buckets of hashes
    folder = _rotated(frame, tmp_path / "rotated")
    in_memory = load(folder)
    assert scan_folders == []  # below the threshold nothing is written
    spilled = load(folder, **SPILL)
    assert len(scan_folders) == 1
    assert spilled.problems == in_memory.problems == []
    assert spilled.calls.schema == pl.Schema(CALLS_SCHEMA)
    assert_frame_equal(spilled.calls, in_memory.calls)
    # Feedback and outcomes in files after their calls' file are joined all the same.
    assert spilled.calls["feedback_count"].sum() == frame["feedback_count"].sum() > 0
    wrong = spilled.calls["outcome_ok"].eq(False).sum()
    assert wrong == frame["outcome_ok"].eq(False).sum() > 0
    assert spilled.calls["outcome_ok"].count() == frame["outcome_ok"].count()


def test_spilled_duplicates_across_files_and_nested_calls_count_once(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(loader, "_CALLS_PER_BUCKET", 100)  # several buckets of id hashes
    folder = tmp_path / "a"
    path = synth.write_otlp(frame, folder / "traces.jsonl", spans_per_request=16)
    (folder / "traces-copy.jsonl").write_bytes(path.read_bytes())  # every span twice
    first = json.loads(path.read_text().splitlines()[0])
    outer = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    native = {**outer, "spanId": "00000000000000aa", "parentSpanId": outer["spanId"]}
    native["attributes"] = [a for a in outer["attributes"] if a["key"].startswith("gen_ai.")]
    # Read first (sorted name), before the parent it is nested in.
    (folder / "a-native.jsonl").write_text(json.dumps(synth.request("demo-app", [native])) + "\n")
    spilled = load(folder, **SPILL)
    assert len(scan_folders) == 1
    assert spilled.calls.height == frame.height
    assert "00000000000000aa" not in spilled.calls["span_id"].to_list()
    assert spilled.calls["span_id"].is_unique().all()
    # Records seen twice count twice, as in memory.
    assert_frame_equal(spilled.calls, load(folder).calls)


def test_spilled_temp_files_are_gone_after_load(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path]
) -> None:
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl", spans_per_request=16)
    assert load(path, **SPILL).calls.height == frame.height
    assert len(scan_folders) == 1
    assert not scan_folders[0].exists()
    assert list((tmp_path / "tmp").iterdir()) == []


def test_the_scanned_frame_reads_its_parts_after_scan_returns(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path]
) -> None:
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl", spans_per_request=16)
    lazy, problems, _ = scan(path, **SPILL)
    assert problems == []
    left = sorted(p.name for p in scan_folders[0].iterdir())
    assert len(left) > 1 and all(name.startswith("final-") for name in left)  # raw parts gone
    derived = lazy.filter(pl.col("tier") == "canary")
    del lazy
    assert derived.collect().height == derived.collect().height > 0  # read as often as asked


def test_spilled_scan_files_are_removed_when_the_process_exits(tmp_path: Path) -> None:
    path = synth.write_otlp(synth.calls(synth.Scenario(users=40, seed=2)), tmp_path / "t.jsonl")
    script = (
        "import sys, tempfile\n"
        "from canarytrace.analysis.load import scan\n"
        "frame, _, _ = scan(sys.argv[1], spill_calls=10, chunk_bytes=4096)\n"
        "print(frame.collect().height)\n"
    )
    env = {"TMPDIR": str(tmp_path / "tmp"), "PATH": ""}
    (tmp_path / "tmp").mkdir()
    done = subprocess.run(
        [sys.executable, "-c", script, str(path)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0
    assert list((tmp_path / "tmp").iterdir()) == []


def test_a_malformed_line_in_a_spilled_input_is_reported_and_the_rest_kept(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path]
) -> None:
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl", spans_per_request=16)
    lines = path.read_text().splitlines(keepends=True)
    lost = json.loads(lines[5])["resourceSpans"][0]["scopeSpans"][0]["spans"]
    lines[5] = lines[5][:40] + "\n"
    path.write_text("".join(lines))
    spilled = load(path, **SPILL)
    assert [(p.source, p.line) for p in spilled.problems] == [(str(path), 6)]
    lost_calls = [s for s in lost if s["name"] not in (A.FEEDBACK_SPAN_NAME, A.OUTCOME_SPAN_NAME)]
    assert spilled.calls.height == frame.height - len(lost_calls) > 0
    assert_frame_equal(spilled.calls, load(path).calls)


def test_worker_processes_give_the_frame_and_problems_of_one_process(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path]
) -> None:
    """Files parsed in two workers, one file each: same calls (a span repeated in a later
    file kept once, records joined across files), same problems in file order, and the
    workers' parts removed with the scan's folder."""
    folder = _rotated(frame, tmp_path / "rotated")
    (folder / "traces-3.jsonl").write_bytes((folder / "traces-0.jsonl").read_bytes())
    for name, bad in (("traces-1.jsonl", 3), ("traces-2.jsonl", 1)):
        lines = (folder / name).read_text().splitlines(keepends=True)
        lines[bad - 1] = lines[bad - 1][:30] + "\n"
        (folder / name).write_text("".join(lines))
    one = load(folder, workers=1, **SPILL)
    two = load(folder, workers=2, **SPILL)
    assert len(scan_folders) == 2
    assert all(not f.exists() for f in scan_folders)
    assert [(p.source, p.line) for p in two.problems] == [
        (str(folder / "traces-1.jsonl"), 3),
        (str(folder / "traces-2.jsonl"), 1),
    ]
    assert two.problems == one.problems
    assert_frame_equal(two.calls, one.calls)
    assert two.calls["span_id"].is_unique().all()
    assert two.calls["feedback_count"].sum() > 0


def test_a_scan_with_workers_keeps_its_parts_until_the_frame_is_read(
    frame: pl.DataFrame, tmp_path: Path, scan_folders: list[Path]
) -> None:
    folder = _rotated(frame, tmp_path / "rotated")
    lazy, problems, names = scan(folder, workers=2, **SPILL)
    assert problems == [] and len(names) == 3
    assert_frame_equal(
        lazy.sort("start", "trace_id", "span_id").collect(), load(folder, workers=1).calls
    )
    # The workers wrote into subfolders of the scan's one folder, never elsewhere.
    assert [f.parent for f in scan_folders] == [tmp_path / "tmp"]
    workers_folders = sorted(p.name for p in scan_folders[0].iterdir() if p.is_dir())
    assert workers_folders == ["file-00000", "file-00001", "file-00002"]


def test_a_failed_worker_falls_back_to_this_process(
    frame: pl.DataFrame,
    tmp_path: Path,
    scan_folders: list[Path],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    folder = _rotated(frame, tmp_path / "rotated")
    monkeypatch.setattr(loader.sys, "executable", "/bin/false")  # every worker exits 1
    with caplog.at_level("WARNING", logger=loader.__name__):
        fallen_back = load(folder, workers=2, **SPILL)
    assert caplog.text.count("parsing it in this process") == 3
    assert_frame_equal(fallen_back.calls, load(folder, workers=1).calls)
    assert fallen_back.problems == []
