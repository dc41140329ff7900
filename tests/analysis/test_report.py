"""Report helpers: trace links, value formats, the JSON for CI, the latest verdict."""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console

from canarytrace.analysis import synth
from canarytrace.analysis.judge import Judgement, Verdict, judge
from canarytrace.analysis.report import (
    HEADERS,
    latest_verdict,
    metric_rows,
    plots,
    print_judgement,
    save_latest,
    to_json,
    trace_link,
    write_html,
    write_markdown,
)


def test_trace_links_for_jaeger_tempo_and_templates() -> None:
    tid = "ab" * 16
    assert trace_link(tid, jaeger_url="http://j:16686/") == f"http://j:16686/trace/{tid}"
    assert trace_link(tid, tempo_url="http://t:3200") == f"http://t:3200/api/traces/{tid}"
    grafana = "http://g/explore?traceId={trace_id}"
    assert trace_link(tid, tempo_url=grafana) == f"http://g/explore?traceId={tid}"
    assert trace_link(tid) is None


def _rendered(judgement: Judgement, width: int) -> list[str]:
    console = Console(record=True, width=width, file=io.StringIO())
    print_judgement(judgement, console)
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_console_table_has_a_line_per_metric_and_no_cut_words_when_narrow() -> None:
    scenario = synth.with_canary(synth.Scenario(users=1500, seed=2), latency_median_ms=1300.0)
    judgement = judge(synth.calls(scenario))
    results = judgement.routes["chat"].metrics
    # In a 120-column terminal, every metric is one line: name, numbers and status.
    lines = _rendered(judgement, 120)
    for r, row in zip(results, metric_rows(judgement.routes["chat"]), strict=True):
        line = next(line for line in lines if line.startswith(row[0] + " "))
        assert line.split()[-1] == r.status
        assert all(cell in line for cell in row), (row, line)
    # Too narrow for the table: the same numbers, each named and whole, nothing cut off.
    for width in (80, 60):
        text = "\n".join(_rendered(judgement, width))
        assert "…" not in text
        lines = text.splitlines()
        for row in metric_rows(judgement.routes["chat"]):
            assert row[0] in lines  # the metric, on a line of its own
            for header, cell in zip(HEADERS[1:], row[1:], strict=True):
                assert f"{header} {cell}" in text, (header, cell, width)
    # A reason that wraps continues under itself, not at the margin.
    narrow = _rendered(judgement, 60)
    first = next(i for i, line in enumerate(narrow) if line.startswith("  - latency p95"))
    assert narrow[first + 1].startswith("    ") and narrow[first + 1].strip()


def test_a_reason_writes_its_numbers_as_the_table_does() -> None:
    scenario = synth.with_canary(synth.Scenario(users=1500, seed=2), latency_median_ms=1300.0)
    route = judge(synth.calls(scenario)).routes["chat"]
    row = next(row for row in metric_rows(route) if row[0] == "latency p95 *")
    low, high = row[4].strip("[]").split(", ")
    margin = row[6].lstrip("+-")  # the reason says "margin 10%", the table "+10%"
    expected = f"latency p95 {row[3]} (interval {low} to {high}; margin {margin}): "
    expected += "significantly worse beyond the margin (adjusted p < 0.001)"
    assert row[5] == "<0.001"  # far beyond the margin: no digits of a normal tail
    assert expected in route.reasons


def test_trace_ids_are_hyperlinks_in_a_terminal_and_urls_in_a_log() -> None:
    judgement = judge(synth.calls(synth.Scenario(users=400, seed=3)))
    slowest = judgement.routes["chat"].slowest_canary[0]["trace_id"]
    url = f"http://j:16686/trace/{slowest}"
    for terminal in (True, False):
        output = io.StringIO()
        console = Console(record=True, width=80, file=output, force_terminal=terminal)
        print_judgement(judgement, console, jaeger_url="http://j:16686")
        text = console.export_text()
        # One line each, however narrow the console: a URL broken over lines is no link.
        line = next(line for line in text.splitlines() if slowest in line)
        assert line.startswith(f"  slowest canary trace {url if not terminal else slowest} ")
        assert line.rstrip().endswith(" ms")
        if terminal:  # the URL is in the hyperlink's escape sequence (OSC 8)
            assert "\x1b]8;id=" in output.getvalue() and url in output.getvalue()


def test_console_json_and_latest_verdict(tmp_path: Path) -> None:
    scenario = synth.with_canary(synth.Scenario(users=1500, seed=2), latency_median_ms=1300.0)
    judgement = judge(synth.calls(scenario))
    console = Console(record=True, width=160)
    print_judgement(judgement, console, tempo_url="http://t:3200")
    text = console.export_text()
    assert "verdict: ROLLBACK" in text and "latency p95 *" in text and "+10%" in text
    data = json.loads(to_json(judgement))
    assert data["exit_code"] == 1
    assert data["routes"]["chat"]["metrics"][2]["name"] == "latency_p95"
    state = save_latest(judgement, tmp_path / "last.json", {"chat": 50})
    recorded = latest_verdict("chat", state)
    assert recorded is not None
    assert (recorded.verdict, recorded.stage) == (Verdict.ROLLBACK, 50)
    assert recorded.canary_model == scenario.canary.model
    assert latest_verdict("summarize", state) is None


def test_a_failed_save_leaves_the_previous_verdicts_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is written beside and renamed over: a crash mid-save loses nothing."""
    state = tmp_path / "last.json"
    before = json.dumps({"summarize": {"verdict": "HOLD", "canary_model": "m", "stage": 5}})
    state.write_text(before)
    judgement = judge(synth.calls(synth.Scenario(users=200, seed=1)))

    def crash(src: object, dst: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("canarytrace.analysis.report.os.replace", crash)
    with pytest.raises(OSError, match="No space left"):
        save_latest(judgement, state, {"chat": 5})
    assert state.read_text() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.json"]  # no temporary file left


def test_a_failing_call_with_no_duration_is_listed_without_one(tmp_path: Path) -> None:
    """A background call whose result failed with no finish time has no duration."""
    calls = synth.calls(synth.Scenario(users=600, seed=4))
    failing = (pl.col("tier") == "canary") & (pl.col("status") == "error")
    calls = calls.with_columns(
        pl.when(failing).then(None).otherwise(pl.col("duration_ms")).alias("duration_ms")
    )
    judgement = judge(calls)
    assert judgement.routes["chat"].failing_canary  # the scenario has failing canary calls

    lines = _rendered(judgement, 160)
    listed = [line for line in lines if line.startswith("  failing canary trace")]
    errors = [line for line in listed if "wrong_answer" not in line]
    assert errors and all(" duration unknown, " in line for line in errors)
    markdown = write_markdown(judgement, calls, tmp_path / "report.md").read_text()
    assert markdown.count(" duration unknown, ") == len(errors)


def test_a_refused_call_is_listed_with_the_category_its_refusal_named() -> None:
    scenario = synth.with_canary(
        synth.Scenario(users=600, seed=4), refusal_rate=0.2, refusal_category="bio"
    )
    text = "\n".join(_rendered(judge(synth.calls(scenario)), 160))
    assert ", refused (bio)" in text


def test_a_route_that_streams_gets_a_time_to_first_token_plot() -> None:
    calls = synth.calls(synth.aa(users=200, seed=2))
    assert sorted(plots(calls, "chat")) == ["cost", "latency", "rates", "ttft"]
    never_streams = calls.with_columns(pl.lit(None, pl.Float64).alias("ttft_ms"))
    assert "ttft" not in plots(never_streams, "chat")


def test_span_values_and_route_names_cannot_escape_the_reports(tmp_path: Path) -> None:
    """An outcome kind or error type comes from whoever wrote the spans: raw in the HTML
    report, `<img src=x onerror=...>` ran in a CI artifact. A route named `chat/v2`
    made the Markdown report crash writing a plot into a missing folder."""
    script = "<img src=x onerror=alert(1)>"
    calls = synth.calls(synth.Scenario(users=600, seed=4)).with_columns(
        pl.col("outcome_kind").replace("wrong_answer", script),
        pl.lit("chat/../v2 beta").alias("route"),
    )
    judgement = judge(calls)
    assert judgement.routes["chat/../v2 beta"].failing_canary
    page = write_html(judgement, calls, tmp_path / "report.html").read_text()
    assert script not in page and html.escape(script) in page
    markdown = write_markdown(judgement, calls, tmp_path / "report.md").read_text()
    plots_folder = tmp_path / "report_plots"
    written = sorted(p.name for p in plots_folder.iterdir())
    assert written and all(name.startswith("chat-v2-beta-") for name in written)
    assert all(f"(report_plots/{name})" in markdown for name in written)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "report.html",
        "report.md",
        "report_plots",
    ]
