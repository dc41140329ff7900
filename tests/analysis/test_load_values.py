"""A span's unusable values (a NaN or infinite number, an end before the start) are read
as missing and reported once per kind and file, never judged as if they were measured."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal
from typer.testing import CliRunner

from analysis.conftest import FakeTraceServer
from analysis.make_fixtures import FIXTURES
from canarytrace import attributes as A
from canarytrace.analysis import synth
from canarytrace.analysis.load import Problem, load
from canarytrace.cli import app

Span = dict[str, Any]
#: A small spill threshold and chunk: files read in several chunks, in two workers.
SPILLED = {"spill_calls": 40, "chunk_bytes": 16 * 1024, "workers": 2}


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    scenario = synth.Scenario(users=150, seed=5, feedback_rate=0.5, outcome_rate=0.5)
    return synth.calls(synth.with_canary(scenario, error_rate=0.05))


def _spans(doc: dict[str, Any]) -> list[Span]:
    return [
        span
        for resource in doc.get("resourceSpans", doc.get("batches", []))
        for scope in resource["scopeSpans"]
        for span in scope["spans"]
    ]


def _rewrite(path: Path, change: Callable[[int, Span], bool]) -> list[str]:
    """Apply `change(line, span)` to the spans of the OTLP JSON lines at `path` (json
    writes a float NaN bare, as Python's and some other producers' encoders do); returns
    the ids of the spans it changed."""
    changed: list[str] = []
    lines = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        doc = json.loads(line)
        changed += [span["spanId"] for span in _spans(doc) if change(number, span)]
        lines.append(json.dumps(doc) + "\n")
    path.write_text("".join(lines))
    return changed


def _set(span: Span, key: str, value: dict[str, object]) -> bool:
    """Give `span`'s attribute `key` the OTLP value `value`, if it has that attribute."""
    for kv in span["attributes"]:
        if kv["key"] == key:
            kv["value"] = value
            return True
    return False


def _setting(key: str, value: dict[str, object], lines: dict[int, int]) -> Callable[..., bool]:
    """A `_rewrite` change: `key` set to `value` on the first `lines[n]` spans of line n
    that have it."""
    left = dict(lines)

    def change(line: int, span: Span) -> bool:
        if left.get(line, 0) and _set(span, key, value):
            left[line] -= 1
            return True
        return False

    return change


def _nulled(frame: pl.DataFrame, column: str, span_ids: list[str]) -> pl.DataFrame:
    """`frame` with `column` null on the calls `span_ids`, sorted as `load` sorts."""
    kept = pl.when(pl.col("span_id").is_in(span_ids)).then(None).otherwise(pl.col(column))
    return frame.with_columns(kept.alias(column)).sort("start", "trace_id", "span_id")


@pytest.mark.parametrize(
    ("key", "column", "value"),
    [
        (A.COST_USD, "cost_usd", {"doubleValue": float("nan")}),  # the generic decoder's
        (A.COST_USD, "cost_usd", {"doubleValue": "-Infinity"}),  # proto3 JSON's spelling
        (A.TIME_TO_FIRST_TOKEN_MS, "ttft_ms", {"doubleValue": "NaN"}),
        (A.TIME_TO_FIRST_TOKEN_MS, "ttft_ms", {"doubleValue": float("inf")}),
        (A.GEN_AI_USAGE_INPUT_TOKENS, "input_tokens", {"doubleValue": "NaN"}),  # an integer
        (A.GEN_AI_USAGE_OUTPUT_TOKENS, "output_tokens", {"intValue": "12 tokens"}),
    ],
)
def test_a_number_that_is_no_number_is_read_as_missing_and_reported_once(
    frame: pl.DataFrame, tmp_path: Path, key: str, column: str, value: dict[str, object]
) -> None:
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl")
    broken = _rewrite(path, _setting(key, value, {2: 2, 4: 1}))
    assert len(broken) == 3
    loaded = load(path)
    assert loaded.problems == [
        Problem(
            str(path),
            2,
            f"{key} is NaN, infinite or not a number on 3 spans (the first here): read as missing",
        )
    ]
    assert_frame_equal(loaded.calls, _nulled(frame, column, broken), rel_tol=1e-12)


@pytest.mark.parametrize("how", [{}, SPILLED], ids=["in memory", "spilled, workers"])
def test_unusable_numbers_are_counted_per_file_and_attribute(
    frame: pl.DataFrame, tmp_path: Path, how: dict[str, int]
) -> None:
    """Not one problem per span: one per attribute and file, at its first line, with the
    count of the whole file (read in several chunks, and in worker processes)."""
    folder = tmp_path / "traces"
    half = frame.height // 2
    first = synth.write_otlp(frame.head(half), folder / "traces-1.jsonl", spans_per_request=16)
    second = synth.write_otlp(frame.slice(half), folder / "traces-2.jsonl", spans_per_request=16)
    nan = {"doubleValue": float("nan")}
    _rewrite(first, _setting(A.COST_USD, nan, {3: 1, 20: 2, 40: 1}))
    _rewrite(first, _setting(A.TIME_TO_FIRST_TOKEN_MS, nan, {7: 1}))
    _rewrite(second, _setting(A.COST_USD, {"doubleValue": "Infinity"}, {5: 1}))
    loaded = load(folder, **how)
    assert [(p.source, p.line, p.message.split(" (")[0]) for p in loaded.problems] == [
        (str(first), 3, f"{A.COST_USD} is NaN, infinite or not a number on 4 spans"),
        (str(first), 7, f"{A.TIME_TO_FIRST_TOKEN_MS} is NaN, infinite or not a number on 1 span"),
        (str(second), 5, f"{A.COST_USD} is NaN, infinite or not a number on 1 span"),
    ]
    assert loaded.calls["cost_usd"].null_count() == frame["cost_usd"].null_count() + 5
    assert loaded.calls["ttft_ms"].null_count() == frame["ttft_ms"].null_count() + 1


def test_a_call_whose_end_is_missing_or_before_its_start_has_no_duration(
    frame: pl.DataFrame, tmp_path: Path
) -> None:
    """Its latency is unknown, not negative (which was clipped into the fastest calls);
    its status, cost and records are kept. A record's bad times are no call's."""
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl")

    def break_times(line: int, span: Span) -> bool:
        if not any(kv["key"] == A.GEN_AI_OPERATION_NAME for kv in span["attributes"]):
            if line == 2:  # a record, not an LLM call: its times measure nothing judged
                span["endTimeUnixNano"] = "1"
            return False
        if line == 3:
            start, end = int(span["startTimeUnixNano"]), int(span["endTimeUnixNano"])
            span["endTimeUnixNano"] = str(start - (end - start))
            return True
        if line == 5:
            del span["endTimeUnixNano"]
            return True
        return False

    broken = _rewrite(path, break_times)
    loaded = load(path)
    calls = len(broken)
    assert loaded.problems == [
        Problem(
            str(path),
            3,
            f"{calls} LLM calls without a duration (a start or end time missing, or the end "
            "before the start; the first here): judged on everything but latency",
        )
    ]
    assert_frame_equal(loaded.calls, _nulled(frame, "duration_ms", broken), rel_tol=1e-12)
    assert loaded.calls["feedback_count"].sum() == frame["feedback_count"].sum()


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_a_servers_unusable_numbers_are_reported_once_per_answer(
    small_frame: pl.DataFrame, trace_server: FakeTraceServer, tmp_path: Path, backend: str
) -> None:
    """Jaeger's answer, and all the traces of a Tempo search together, count as one file:
    one problem for the NaN costs of two traces, naming where the first was."""
    trace_server.root = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, trace_server.root)
    if backend == "jaeger":
        answers = [trace_server.root / "jaeger" / "api_v3_traces.json"]
        source = f"jaeger+http://{trace_server.host}?service=demo-app"
    else:
        search = json.loads((FIXTURES / "tempo" / "api_search.json").read_text())
        ids = [t["traceID"].rjust(32, "0") for t in search["traces"]]
        answers = [trace_server.root / "tempo" / f"api_traces_{i}.json" for i in ids]
        source = f"tempo+http://{trace_server.host}"
    nan = {"doubleValue": "NaN"}
    broken: list[Path] = []
    for answer in answers:
        doc = json.loads(answer.read_text())
        for span in _spans(doc.get("result", doc)):
            if len(broken) < 2 and _set(span, A.COST_USD, nan):
                broken.append(answer)
        answer.write_text(json.dumps(doc))
    loaded = load(source)
    (problem,) = loaded.problems
    assert problem.message.startswith(f"{A.COST_USD} is NaN, infinite or not a number on 2 spans")
    if backend == "jaeger":
        assert problem.source.startswith(f"http://{trace_server.host}/api/v3/traces?")
        assert problem.line == 1  # the answer's first document
    else:
        first_trace = broken[0].stem.removeprefix("api_traces_")
        assert problem.source == f"http://{trace_server.host}/api/traces/{first_trace}"
    assert loaded.calls["cost_usd"].null_count() == small_frame["cost_usd"].null_count() + 2


def test_analyze_reports_a_nan_time_to_first_token_instead_of_failing(tmp_path: Path) -> None:
    """A NaN time to first token reached the judge's histograms, whose cast failed."""
    path = synth.write_otlp(synth.calls(synth.aa(users=300, seed=3)), tmp_path / "t.jsonl")
    _rewrite(path, _setting(A.TIME_TO_FIRST_TOKEN_MS, {"doubleValue": float("nan")}, {2: 1}))
    env = {"CANARYTRACE_STATE_DIR": str(tmp_path / "state")}
    result = CliRunner().invoke(app, ["analyze", str(path)], env=env)
    assert isinstance(result.exception, SystemExit), result.output
    assert result.exit_code in (0, 3), result.output
    assert f"{path}:2: {A.TIME_TO_FIRST_TOKEN_MS} is NaN" in result.stderr
