"""Every loader gives the same frame of calls for the same spans; bad lines are reported."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import polars as pl
import pytest
import zstandard
from polars.testing import assert_frame_equal

from analysis.conftest import FakeTraceServer
from analysis.make_fixtures import FIXTURES
from canarytrace import attributes as A
from canarytrace.analysis import synth
from canarytrace.analysis.load import export_parquet, load
from canarytrace.analysis.schema import CALLS_SCHEMA, conform
from canarytrace.errors import TraceSourceError


def _same(frame: pl.DataFrame, expected: pl.DataFrame) -> None:
    assert frame.schema == pl.Schema(CALLS_SCHEMA)
    assert_frame_equal(frame, expected.sort("start", "trace_id", "span_id"), rel_tol=1e-12)


@pytest.fixture(scope="module")
def frame() -> pl.DataFrame:
    return synth.calls(synth.with_canary(synth.Scenario(users=300, seed=3), error_rate=0.05))


def test_jsonl_round_trip_gives_the_generated_frame(frame: pl.DataFrame, tmp_path: Path) -> None:
    loaded = load(synth.write_otlp(frame, tmp_path / "traces-1.jsonl"))
    assert loaded.problems == []
    _same(loaded.calls, frame)
    assert loaded.calls["feedback_count"].sum() == frame["feedback_count"].sum()


def test_zstd_rotated_folder_glob_and_parquet_give_the_identical_frame(
    frame: pl.DataFrame, tmp_path: Path
) -> None:
    reference = load(synth.write_otlp(frame, tmp_path / "one" / "traces.jsonl")).calls
    zst = load(synth.write_otlp(frame, tmp_path / "zst" / "traces.jsonl.zst", compress=True))
    assert_frame_equal(zst.calls, reference)
    # Rotated files: calls in one file, their feedback in a later one.
    rotated = tmp_path / "rotated"
    lines = (tmp_path / "one" / "traces.jsonl").read_text().splitlines(keepends=True)
    third = len(lines) // 3
    for i, part in enumerate((lines[:third], lines[third : 2 * third], lines[2 * third :])):
        (rotated / f"traces-2026-06-02T0{i}.jsonl").parent.mkdir(exist_ok=True)
        (rotated / f"traces-2026-06-02T0{i}.jsonl").write_text("".join(part))
    assert_frame_equal(load(rotated).calls, reference)
    assert_frame_equal(load(str(rotated / "traces-*.jsonl")).calls, reference)
    out = tmp_path / "calls.parquet"
    export_parquet(rotated, out)
    assert_frame_equal(load(out).calls, reference)


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_the_service_tier_is_read_from_either_providers_attribute(
    frame: pl.DataFrame, tmp_path: Path, provider: str
) -> None:
    served = frame.with_columns(
        pl.lit(provider).alias("provider"),
        pl.when(pl.col("tier") == "canary")
        .then(pl.lit("flex"))
        .otherwise(pl.lit("default"))
        .alias("service_tier"),
    )
    loaded = load(synth.write_otlp(served, tmp_path / "traces.jsonl"))
    _same(loaded.calls, served)


def test_refusals_and_fallback_answers_are_read(tmp_path: Path) -> None:
    """`canarytrace.refused` is recorded only when true: absent reads False."""
    base = synth.Scenario(users=300, seed=3)
    scenario = replace(base, production=replace(base.production, refusal_rate=0.1))
    refusing = synth.calls(
        synth.with_canary(
            scenario, refusal_rate=0.1, fallback_model="claude-x", refusal_category="cyber"
        )
    )
    counts = refusing.group_by("tier").agg(
        pl.col("refused").sum(), pl.col("fallback_model").is_not_null().sum()
    )
    by_tier = {tier: (refused, answered) for tier, refused, answered in counts.iter_rows()}
    assert by_tier["production"][0] > 0 and by_tier["production"][1] == 0  # none answered
    assert by_tier["canary"][0] > 0 and by_tier["canary"][1] == by_tier["canary"][0]
    categories = refusing.filter(pl.col("refused"))["refusal_category"]
    assert categories.null_count() == by_tier["production"][0]  # production names none
    loaded = load(synth.write_otlp(refusing, tmp_path / "traces.jsonl"))
    _same(loaded.calls, refusing)


def test_the_input_read_from_the_prompt_cache_is_read(tmp_path: Path) -> None:
    base = synth.Scenario(users=300, seed=3)
    scenario = replace(base, production=replace(base.production, cache_read_share=0.5))
    cached = synth.calls(scenario)
    reads = cached.group_by("tier").agg(
        pl.col("cache_read_tokens").sum() / pl.col("input_tokens").sum()
    )
    assert dict(reads.iter_rows()) == {"production": pytest.approx(0.5, abs=0.01), "canary": 0}
    loaded = load(synth.write_otlp(cached, tmp_path / "traces.jsonl"))
    _same(loaded.calls, cached)


@pytest.mark.parametrize(
    "column", ["service_tier", "refused", "fallback_model", "refusal_category", "cache_read_tokens"]
)
def test_a_calls_file_written_before_a_later_column_still_loads(
    frame: pl.DataFrame, tmp_path: Path, column: str
) -> None:
    older = tmp_path / "older.parquet"
    frame.drop(column).write_parquet(older)
    loaded = load(older).calls
    assert loaded.schema == pl.Schema(CALLS_SCHEMA)
    assert loaded[column].null_count() == frame.height


def test_a_folder_of_parquet_files_with_two_schemas_and_a_broken_file(
    frame: pl.DataFrame, tmp_path: Path
) -> None:
    # Files that share a schema are read by one scan, each schema by its own; a file that
    # is not Parquet at all is reported by name and the others are still read.
    folder = tmp_path / "parts"
    folder.mkdir()
    half = frame.height // 2
    frame.head(half).write_parquet(folder / "a-0.parquet")
    older = frame.slice(half, 10).with_columns(
        pl.col("input_tokens").cast(pl.Int32), pl.lit("x").alias("extra")
    )
    older.write_parquet(folder / "a-1.parquet")
    frame.slice(half + 10).write_parquet(folder / "a-2.parquet")
    (folder / "a-3.parquet").write_bytes(b"not parquet")
    loaded = load(folder)
    assert [(Path(p.source).name, p.line) for p in loaded.problems] == [("a-3.parquet", None)]
    assert "unreadable Parquet" in loaded.problems[0].message
    assert_frame_equal(
        loaded.calls.sort("trace_id", "span_id"),
        conform(frame).collect().sort("trace_id", "span_id"),
    )


def test_jaeger_and_tempo_apis_give_the_same_frame_as_the_files(
    small_frame: pl.DataFrame, tmp_path: Path, trace_server: FakeTraceServer
) -> None:
    host, requested = trace_server.host, trace_server.requested
    files = load(synth.write_otlp(small_frame, tmp_path / "traces.jsonl")).calls
    jaeger = load(f"jaeger+http://{host}?service=demo-app&lookback=2h")
    assert jaeger.problems == []
    assert_frame_equal(jaeger.calls, files)
    assert any("query.service_name=demo-app" in r for r in requested)
    tempo = load(f"tempo+http://{host}?q=%7B%7D&lookback=2h")
    assert tempo.problems == []
    assert_frame_equal(tempo.calls, files)
    assert any(r.startswith("/api/search?q=%7B%7D") for r in requested)
    _same(files, small_frame)


def test_malformed_and_truncated_lines_are_reported_with_file_and_line(
    frame: pl.DataFrame, tmp_path: Path
) -> None:
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl")
    lines = path.read_text().splitlines(keepends=True)
    broken = [*lines[:2], "{not json\n", '{"hello": 1}\n', "\n", *lines[2:-1], lines[-1][:50]]
    path.write_text("".join(broken))
    loaded = load(path)
    found = {(p.source, p.line) for p in loaded.problems}
    assert found == {(str(path), 3), (str(path), 4), (str(path), len(broken))}
    assert "line skipped" in str(loaded.problems[0])
    whole = load(synth.write_otlp(frame, tmp_path / "whole.jsonl")).calls
    last_spans = json.loads(lines[-1])["resourceSpans"][0]["scopeSpans"][0]["spans"]
    lost = {s["spanId"] for s in last_spans}
    assert loaded.calls.height == whole.filter(~pl.col("span_id").is_in(lost)).height


def test_a_truncated_zstd_file_keeps_what_was_readable(frame: pl.DataFrame, tmp_path: Path) -> None:
    path = synth.write_otlp(frame, tmp_path / "t.jsonl.zst", compress=True)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    loaded = load(path)
    assert loaded.problems and loaded.problems[-1].source == str(path)
    assert 0 < loaded.calls.height < frame.height


def test_nested_and_repeated_spans_count_once(frame: pl.DataFrame, tmp_path: Path) -> None:
    path = synth.write_otlp(frame.head(5), tmp_path / "a" / "traces.jsonl")
    shutil.copy(path, tmp_path / "a" / "traces-copy.jsonl")  # the same spans twice
    first = json.loads(path.read_text().splitlines()[0])
    outer = first["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    native = {**outer, "spanId": "00000000000000aa", "parentSpanId": outer["spanId"]}
    native["attributes"] = [a for a in outer["attributes"] if a["key"].startswith("gen_ai.")]
    doc = synth.request("demo-app", [native])
    (tmp_path / "a" / "traces-native.jsonl").write_text(json.dumps(doc) + "\n")
    loaded = load(tmp_path / "a")
    assert loaded.calls.height == 5
    assert "00000000000000aa" not in loaded.calls["span_id"].to_list()


def test_since_and_until_keep_the_window(frame: pl.DataFrame, tmp_path: Path) -> None:
    path = synth.write_otlp(frame, tmp_path / "traces.jsonl")
    start = frame["start"].min()
    loaded = load(path, since="2026-06-02T01:00:00+00:00", until="2026-06-02T02:00")
    assert loaded.calls.height > 0
    assert loaded.calls["start"].min() >= start.replace(hour=1)
    assert loaded.calls["start"].max() < start.replace(hour=2)


def test_records_join_by_link_when_target_attributes_are_missing(tmp_path: Path) -> None:
    frame = synth.calls(synth.Scenario(users=3, feedback_rate=1.0, seed=9))
    docs = [
        json.loads(line)
        for line in synth.write_otlp(frame, tmp_path / "t.jsonl").read_text().splitlines()
    ]
    for doc in docs:
        for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
            span["attributes"] = [
                a for a in span["attributes"] if not a["key"].startswith("canarytrace.target.")
            ]
    path = tmp_path / "links.jsonl"
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    loaded = load(path).calls
    assert loaded["feedback_count"].sum() == frame["feedback_count"].sum() > 0
    assert A.FEEDBACK_SPAN_NAME not in loaded["operation"].to_list()


def test_unreadable_sources_raise_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TraceSourceError, match="no trace files found"):
        load(tmp_path / "missing")
    with pytest.raises(TraceSourceError, match="cannot connect"):
        load("jaeger+http://127.0.0.1:9?service=x")
    bad = tmp_path / "foreign.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(bad)
    with pytest.raises(TraceSourceError, match="missing columns"):
        load(bad)


def test_the_embedded_folder_is_the_default(
    frame: pl.DataFrame, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synth.write_otlp(frame.head(7), tmp_path / "traces-0001.jsonl")
    monkeypatch.setenv("CANARYTRACE_TRACES_DIR", str(tmp_path))
    assert load().calls.height == 7


def test_zstd_writer_output_is_a_real_zstd_frame(frame: pl.DataFrame, tmp_path: Path) -> None:
    path = synth.write_otlp(frame.head(3), tmp_path / "t.jsonl.zst", compress=True)
    with path.open("rb") as compressed:
        text = zstandard.ZstdDecompressor().stream_reader(compressed).read().decode()
    assert text.count("\n") == 1 and '"resourceSpans"' in text


def test_zstd_files_of_several_frames_are_read_whole(frame: pl.DataFrame, tmp_path: Path) -> None:
    # A writer that compresses each export on its own appends one zstd frame per batch.
    plain = synth.write_otlp(frame, tmp_path / "plain.jsonl")
    lines = plain.read_bytes().splitlines(keepends=True)
    compressor = zstandard.ZstdCompressor()
    path = tmp_path / "frames.jsonl.zst"
    path.write_bytes(b"".join(compressor.compress(line) for line in lines))
    assert_frame_equal(load(path).calls, load(plain).calls)


@pytest.mark.parametrize("backend", ["jaeger", "tempo"])
def test_an_answer_that_reaches_the_trace_limit_is_reported(
    trace_server: FakeTraceServer, backend: str
) -> None:
    """The fixtures hold 32 traces. Asked for at most 32, the server may have left some
    out, and a verdict on part of the window must say so; asked for 33, it did not."""
    source = {
        "jaeger": f"jaeger+http://{trace_server.host}?service=demo-app&lookback=2h",
        "tempo": f"tempo+http://{trace_server.host}?lookback=2h",
    }[backend]
    assert load(f"{source}&limit=33").problems == []
    reached = load(f"{source}&limit=32")
    assert [p.message for p in reached.problems] == [
        "32 traces, the most the query asked for: the window may hold more, which were "
        "not read; raise limit= or shorten the window (since/until, else lookback=)"
    ]
    assert "limit=32" in reached.problems[0].source or "num_traces=32" in (
        reached.problems[0].source
    )
    assert reached.calls.height > 0  # what was read is kept
    with pytest.raises(TraceSourceError, match=r"limit='many': give a whole number"):
        load(f"{source}&limit=many")


def test_a_tempo_trace_missing_on_fetch_is_reported(
    small_frame: pl.DataFrame, trace_server: FakeTraceServer, tmp_path: Path
) -> None:
    trace_server.root = tmp_path / "fixtures"
    shutil.copytree(FIXTURES, trace_server.root)
    search = json.loads((FIXTURES / "tempo" / "api_search.json").read_text())
    gone = search["traces"][0]["traceID"].rjust(32, "0")
    (trace_server.root / "tempo" / f"api_traces_{gone}.json").unlink()
    loaded = load(f"tempo+http://{trace_server.host}")
    assert [p.message for p in loaded.problems] == ["trace listed by the search not found"]
    assert gone in loaded.problems[0].source
    assert 0 < loaded.calls.height <= small_frame.height


def test_the_typed_decoder_reads_every_line_as_the_generic_one(
    frame: pl.DataFrame, tmp_path: Path
) -> None:
    from canarytrace.analysis import otlp

    path = synth.write_otlp(frame.head(200), tmp_path / "traces.jsonl")
    lines = path.read_bytes().splitlines()
    # A producer writing int64 as JSON numbers and the status code by name (grpc-gateway).
    doc = json.loads(lines[0])
    for span in doc["resourceSpans"][0]["scopeSpans"][0]["spans"]:
        span["startTimeUnixNano"] = int(span["startTimeUnixNano"])
        span["status"] = {"code": "STATUS_CODE_ERROR"}
        for kv in span["attributes"]:
            if "intValue" in kv["value"]:
                kv["value"]["intValue"] = int(kv["value"]["intValue"])
    for line in [*lines, json.dumps(doc).encode()]:
        generic = otlp._generic_rows(json.loads(line))
        assert generic
        assert otlp._typed_rows(otlp._DECODER.decode(line)) == generic
