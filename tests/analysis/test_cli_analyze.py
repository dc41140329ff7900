"""`canarytrace analyze` and `canarytrace export` through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canarytrace.analysis import synth
from canarytrace.analysis.report import latest_verdict
from canarytrace.cli import app

runner = CliRunner()


@pytest.fixture(autouse=True)
def _state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CANARYTRACE_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)


def _traces(tmp_path: Path, scenario: synth.Scenario, name: str) -> Path:
    return synth.write_otlp(synth.calls(scenario), tmp_path / name / "traces-1.jsonl").parent


def test_exit_codes_follow_the_verdict(tmp_path: Path) -> None:
    bad = _traces(
        tmp_path, synth.with_canary(synth.Scenario(users=800, seed=1), cost_multiplier=1.4), "bad"
    )
    good = _traces(tmp_path, synth.aa(users=3000, seed=4), "good")
    thin = _traces(tmp_path, synth.aa(users=30, seed=2), "thin")
    rollback = runner.invoke(app, ["analyze", str(bad)])
    assert rollback.exit_code == 1, rollback.output
    assert "ROLLBACK" in rollback.output and "cost per call" in rollback.output
    assert runner.invoke(app, ["analyze", str(good)]).exit_code == 0
    assert runner.invoke(app, ["analyze", str(thin)]).exit_code == 3
    recorded = latest_verdict("chat", tmp_path / "state" / "last-verdict.json")
    assert recorded is not None and recorded.verdict == "HOLD"


def test_usage_errors_and_unreadable_sources(tmp_path: Path) -> None:
    good = _traces(tmp_path, synth.aa(users=100, seed=4), "good")
    assert runner.invoke(app, ["analyze", str(tmp_path / "nowhere")]).exit_code == 4
    assert runner.invoke(app, ["analyze", str(good), "--since", "yesterday"]).exit_code == 2
    backwards = runner.invoke(app, ["analyze", str(good), "--since", "1h", "--until", "2h"])
    assert backwards.exit_code == 2
    assert "--since 1h is not before --until 2h" in backwards.stderr
    assert runner.invoke(app, ["analyze", str(good), "--confidence", "1.5"]).exit_code == 2
    assert runner.invoke(app, ["analyze", str(good), "--route", "nope"]).exit_code == 2
    one_route = runner.invoke(app, ["analyze", str(good), "--route", "chat"])
    assert one_route.exit_code == 3 and "route chat:" in one_route.output  # thin: HOLD
    assert runner.invoke(app, ["analyze", str(good), "--format", "yaml"]).exit_code == 2
    registry = tmp_path / "models.yaml"
    registry.write_text(
        "routes:\n  chat:\n    production: a-20240101\n    judge: {colour: red}\n"
        "models:\n  - {id: a-20240101, provider: other}\n"
    )
    result = runner.invoke(app, ["analyze", str(good), "--registry", str(registry)])
    assert result.exit_code == 2 and "routes.chat.judge.colour" in result.output


def test_json_for_ci_and_reports_with_plots_and_links(tmp_path: Path) -> None:
    source = _traces(
        tmp_path, synth.with_canary(synth.Scenario(users=1500, seed=3), error_rate=0.04), "src"
    )
    md, page = tmp_path / "report.md", tmp_path / "report.html"
    args = ["analyze", str(source), "--format", "json", "--sequential"]
    args += ["--markdown", str(md), "--html", str(page), "--jaeger-url", "http://jaeger:16686"]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert data["verdict"] == "ROLLBACK" and data["exit_code"] == 1
    assert data["mode"].startswith("sequential")
    failing = data["routes"]["chat"]["failing_canary"][0]["trace_id"]
    assert f"](http://jaeger:16686/trace/{failing})" in md.read_text()
    assert sorted(p.name for p in (tmp_path / "report_plots").iterdir()) == [
        "chat_cost.png",
        "chat_latency.png",
        "chat_rates.png",
        "chat_ttft.png",  # half the synthetic calls stream
    ]
    assert page.read_text().count("data:image/png;base64,") == 4


def test_export_writes_parquet_that_analyzes_the_same(tmp_path: Path) -> None:
    source = _traces(
        tmp_path, synth.with_canary(synth.Scenario(users=600, seed=5), error_rate=0.05), "src"
    )
    out = tmp_path / "calls.parquet"
    assert runner.invoke(app, ["export", str(source), "--parquet", str(out)]).exit_code == 0
    from_json = runner.invoke(app, ["analyze", str(source), "--format", "json"])
    from_parquet = runner.invoke(app, ["analyze", str(out), "--format", "json"])
    # Equal up to float rounding: the lazy JSON scan and the sorted Parquet add each
    # user's costs in another order (the streaming engine never promises an order).
    assert _rounded(json.loads(from_json.stdout)) == _rounded(json.loads(from_parquet.stdout))


def _rounded(value: object) -> object:
    if isinstance(value, dict):
        return {key: _rounded(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rounded(item) for item in value]
    if isinstance(value, float):
        return float(f"{value:.12g}")
    return value


def test_a_file_of_nothing_but_a_broken_line_is_named_not_a_crash(tmp_path: Path) -> None:
    """The collector died writing its first batch: the line is named and the exit says
    the source is unreadable (an empty frame of calls once broke the loader)."""
    path = tmp_path / "traces.jsonl"
    path.write_text('{"resourceSpans": [\n')
    result = runner.invoke(app, ["analyze", str(path)])
    assert result.exit_code == 4, result.output
    assert f"{path}:1: malformed or truncated JSON" in result.stderr
    assert f"no LLM calls in {path}; nothing to judge" in result.stderr


def test_malformed_lines_are_reported_on_stderr(tmp_path: Path) -> None:
    source = _traces(tmp_path, synth.aa(users=100, seed=6), "src")
    with (source / "traces-1.jsonl").open("a") as f:
        f.write('{"resourceSpans": [{"scopeSpans": [\n')
    result = runner.invoke(app, ["analyze", str(source), "--format", "json"])
    assert f"traces-1.jsonl:{len((source / 'traces-1.jsonl').read_text().splitlines())}" in (
        result.stderr
    )
    assert json.loads(result.stdout)["problems"][0]["line"] > 1


def _registry(tmp_path: Path, stage: int, extra: str = "") -> Path:
    """A registry whose route chat has synth's two models, at `stage`."""
    path = tmp_path / "models.yaml"
    path.write_text(
        "routes:\n  chat:\n    production: claude-3-5-sonnet-20241022\n"
        f"    canary: claude-3-opus-20241219\n    stage: {stage}\n{extra}"
        "models:\n  - {id: claude-3-5-sonnet-20241022, provider: anthropic}\n"
        "  - {id: claude-3-opus-20241219, provider: anthropic}\n"
    )
    return path


def test_a_promote_verdict_is_recorded_with_its_stage_and_supports_one_step(
    tmp_path: Path,
) -> None:
    good = _traces(tmp_path, synth.aa(users=3000, seed=4), "good")
    registry = _registry(tmp_path, stage=50)
    assert runner.invoke(app, ["analyze", str(good), "-r", str(registry)]).exit_code == 0
    state = json.loads((tmp_path / "state" / "last-verdict.json").read_text())
    assert state["chat"]["stage"] == 50
    assert state["chat"]["canary_model"] == "claude-3-opus-20241219"
    promote = ["promote", "chat", "--require-verdict", "-r", str(registry)]
    assert runner.invoke(app, promote).exit_code == 0  # 50% -> 100%
    again = runner.invoke(app, promote)
    assert again.exit_code == 1 and "judged stage 50%, the route is now at 100%" in again.stderr


@pytest.mark.parametrize("damaged", ['{"chat": {"verd', "[]"])
def test_a_damaged_state_file_is_moved_aside_with_a_warning(tmp_path: Path, damaged: str) -> None:
    """The verdict's exit code stands (3, HOLD: not 1, which CI reads as ROLLBACK)."""
    thin = _traces(tmp_path, synth.aa(users=30, seed=2), "thin")
    state = tmp_path / "state" / "last-verdict.json"
    state.parent.mkdir()
    state.write_text(damaged)
    result = runner.invoke(app, ["analyze", str(thin)])
    assert result.exit_code == 3, result.output
    assert f"warning: {state}: not a verdict file" in result.stderr
    assert f"moved to {state}.damaged" in result.stderr
    assert Path(f"{state}.damaged").read_text() == damaged
    assert json.loads(state.read_text())["chat"]["verdict"] == "HOLD"


def test_a_state_folder_that_cannot_be_written_keeps_the_verdicts_exit_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    thin = _traces(tmp_path, synth.aa(users=30, seed=2), "thin")
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv("CANARYTRACE_STATE_DIR", str(tmp_path / "a-file" / "state"))
    result = runner.invoke(app, ["analyze", str(thin)])
    assert result.exit_code == 3, result.output
    assert "verdict not recorded" in result.stderr and "CANARYTRACE_STATE_DIR" in result.stderr


def test_a_named_registry_must_exist_and_load(tmp_path: Path) -> None:
    """Only the default ./models.yaml may be absent: a named one is never skipped."""
    thin = _traces(tmp_path, synth.aa(users=30, seed=2), "thin")
    missing = runner.invoke(app, ["analyze", str(thin), "-r", str(tmp_path / "nope.yaml")])
    assert missing.exit_code == 2
    assert f"{tmp_path / 'nope.yaml'}: no such registry file" in missing.stderr
    bad_date = _registry(tmp_path, stage=50, extra="    upgraded_on: 2024-13-45\n")
    dated = runner.invoke(app, ["analyze", str(thin), "-r", str(bad_date)])
    assert dated.exit_code == 2
    assert f"{bad_date}:6: routes.chat.upgraded_on: Input should be a valid date" in dated.stderr
    bad_date.unlink()
    assert runner.invoke(app, ["analyze", str(thin)]).exit_code == 3  # default, absent


def test_a_failed_run_never_exits_with_rollbacks_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Any uncaught error exited 1, which CI reads as ROLLBACK: a report that could not be
    written after a HOLD, or a bug."""
    traces = _traces(tmp_path, synth.aa(users=30, seed=2), "thin")
    missing = tmp_path / "no-such-folder" / "report.html"
    unwritten = runner.invoke(app, ["analyze", str(traces), "--html", str(missing)])
    assert unwritten.exit_code == 5, unwritten.output
    assert f"{missing}: cannot be written" in unwritten.output
    recorded = latest_verdict("chat", tmp_path / "state" / "last-verdict.json")
    assert recorded is not None and recorded.verdict == "HOLD"  # the verdict is kept

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr("canarytrace.analysis.command.judge", broken)
    crashed = runner.invoke(app, ["analyze", str(traces)])
    assert crashed.exit_code == 5
    assert "ZeroDivisionError" in crashed.output and "internal error" in crashed.output


def test_a_gzip_file_is_named_as_such_not_read_as_broken_json(tmp_path: Path) -> None:
    """Read as JSON, it gave a 'malformed JSON' line per chunk and no word of gzip."""
    import gzip

    plain = _traces(tmp_path, synth.aa(users=30, seed=2), "plain") / "traces-1.jsonl"
    packed = tmp_path / "traces-1.jsonl.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    result = runner.invoke(app, ["analyze", str(packed)])
    assert result.exit_code == 4
    assert f"{packed}: .gz compression is not read; decompress it" in " ".join(
        result.output.split()
    )
    assert "malformed" not in result.output
