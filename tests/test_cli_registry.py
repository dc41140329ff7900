"""The registry commands through typer's CliRunner: exit codes and what a person reads."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from canarytrace.cli import app
from canarytrace.registry import parse_registry

FIXTURES = Path(__file__).parent / "fixtures"
EXAMPLE = Path(__file__).resolve().parents[1] / "models.yaml"
runner = CliRunner()


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    shutil.copy(FIXTURES / "registry" / "commented.yaml", path)
    return path


def test_validate_accepts_a_good_registry_and_warns_of_a_coming_retirement() -> None:
    path = FIXTURES / "registry" / "valid.yaml"
    result = runner.invoke(app, ["validate", str(path), "--as-of", "2025-12-01"])
    assert result.exit_code == 0, result.output
    assert "valid (1 routes, 3 models)" in result.stdout
    assert "warning" in result.stderr and "retires on 2026-01-05, in 35 days" in result.stderr


def test_validate_warns_of_a_model_genai_prices_cannot_price(tmp_path: Path) -> None:
    """A canary released after the installed genai-prices: its calls would have no cost
    and the judge would hold it, which is better known before the rollout."""
    path = tmp_path / "models.yaml"
    path.write_text(
        (FIXTURES / "registry" / "valid.yaml")
        .read_text()
        .replace("claude-opus-4-8", "claude-opus-9-20270101")
    )
    result = runner.invoke(app, ["validate", str(path), "--as-of", "2025-12-01"])
    assert result.exit_code == 0, result.output  # a warning, not an error
    unpriced = [line for line in result.stderr.splitlines() if "no price" in line]
    assert len(unpriced) == 1
    assert unpriced[0].startswith(f"warning {path}:5: routes.chat.canary: genai-prices ")
    assert "has no price for claude-opus-9-20270101: its calls will have no cost" in unpriced[0]
    priced = runner.invoke(app, ["validate", str(FIXTURES / "registry" / "valid.yaml")])
    assert "no price" not in priced.stderr


def test_validate_refuses_a_retired_model_with_file_line_and_key() -> None:
    path = FIXTURES / "registry" / "valid.yaml"
    result = runner.invoke(app, ["validate", str(path), "--as-of", "2026-01-05"])
    assert result.exit_code == 1
    assert f"{path}:6: routes.chat.fallback: claude-3-opus-20240229 retired on 2026-01-05" in (
        result.stderr
    )


def test_validate_lists_every_mistake_of_a_malformed_registry() -> None:
    path = FIXTURES / "registry" / "many_mistakes.yaml"
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("error ")]
    assert [e.split(": ")[0] for e in errors] == [f"error {path}:{n}" for n in (9, 6, 5)]


def test_the_example_registry_was_valid_in_the_articles_time_and_is_retired_now() -> None:
    # The article's models were current in mid-2025; since then Anthropic and OpenAI
    # retired three of them. validate says so; routing (load_registry) still loads it.
    then = runner.invoke(app, ["validate", str(EXAMPLE), "--as-of", "2025-06-01"])
    assert then.exit_code == 0, then.output
    now = runner.invoke(app, ["validate", str(EXAMPLE), "--as-of", "2026-11-25"])
    assert now.exit_code == 1
    retired = [line for line in now.stderr.splitlines() if "retired on" in line]
    assert len(retired) == 3


def test_status_shows_routes_tiers_and_lifecycles(registry: Path) -> None:
    result = runner.invoke(
        app, ["status", "-r", str(registry), "--as-of", "2026-11-25"], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    for text in ("chat", "summarize", "claude-opus-4-8", "5% of [5, 25, 50, 100]"):
        assert text in result.stdout
    assert "retired on 2026-01-05" in result.stdout
    assert "retires on 2027-01-14, in 50 days" in result.stdout


def test_status_in_a_ci_log_keeps_every_model_id_whole(registry: Path) -> None:
    # 80 columns, as rich assumes where there is no terminal: too narrow for the table.
    result = runner.invoke(
        app, ["status", "-r", str(registry), "--as-of", "2026-11-25"], env={"COLUMNS": "80"}
    )
    assert result.exit_code == 0, result.output
    assert "…" not in result.stdout
    reg = parse_registry(registry, environ={})
    for _route, tier, model_id in reg.model_ids():
        assert f"tier {tier}" in result.stdout and f"model {model_id}" in result.stdout
    assert "lifecycle retired on 2026-01-05 (replacement: claude-opus-4-8)" in result.stdout


def test_promote_moves_one_stage_and_rollback_blocks_it(registry: Path) -> None:
    promoted = runner.invoke(app, ["promote", "chat", "-r", str(registry)])
    assert promoted.exit_code == 0, promoted.output
    assert "5% -> 25%" in promoted.stdout
    assert parse_registry(registry, environ={}).routes["chat"].stage == 25

    rolled = runner.invoke(
        app, ["rollback", "chat", "--reason", "error burst", "-r", str(registry)]
    )
    assert rolled.exit_code == 0, rolled.output
    assert "rolled back to claude-sonnet-4-6: error burst" in rolled.stdout

    refused = runner.invoke(app, ["promote", "chat", "-r", str(registry)])
    assert refused.exit_code == 1
    assert "is rolled back (error burst)" in refused.stderr

    cleared = runner.invoke(app, ["rollback", "chat", "--clear", "-r", str(registry)])
    assert cleared.exit_code == 0, cleared.output
    assert runner.invoke(app, ["promote", "chat", "-r", str(registry)]).exit_code == 0


def test_rollback_without_a_reason_is_refused(registry: Path) -> None:
    result = runner.invoke(app, ["rollback", "chat", "-r", str(registry)])
    assert result.exit_code == 1
    assert "needs a reason" in result.stderr


def test_the_registry_defaults_to_the_environment_variable(
    registry: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYTRACE_REGISTRY", str(registry))
    result = runner.invoke(app, ["promote", "summarize", "--as-of", "2026-11-25"])
    assert result.exit_code == 0, result.output
    assert "25% -> 50%" in result.stdout
    # The canary is promoted, with a warning: it retires in 50 days.
    assert "gpt-4o-2024-11-20 retires on 2027-01-14, in 50 days" in result.stderr


def test_lint_json_output_and_exit_codes() -> None:
    dirty = runner.invoke(
        app, ["lint", str(FIXTURES / "lint" / "dirty"), "--format", "json", "--as-of", "2026-11-25"]
    )
    assert dirty.exit_code == 1
    findings = json.loads(dirty.stdout)
    assert {f["kind"] for f in findings} == {"undated-alias", "retired", "retiring"}
    assert all({"file", "line", "model", "why", "suggestion"} <= f.keys() for f in findings)

    clean = runner.invoke(app, ["lint", str(FIXTURES / "lint" / "clean"), "--as-of", "2026-11-25"])
    assert clean.exit_code == 0, clean.output
    assert clean.stdout == ""


def test_lint_text_output_is_one_line_per_finding() -> None:
    path = FIXTURES / "lint" / "dirty" / "config" / "settings.yaml"
    result = runner.invoke(app, ["lint", str(path), "--as-of", "2026-11-25"])
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 3
    assert lines[0].startswith(f"{path}:2: claude-3-5-sonnet-latest: undated alias")


def _record(state: Path, **entry: object) -> None:
    """Write the verdict file `analyze` keeps, with `entry` as route chat's record."""
    state.mkdir(exist_ok=True)
    (state / "last-verdict.json").write_text(json.dumps({"chat": entry}))


def test_promote_with_require_verdict_needs_a_promote_verdict_for_this_canary(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARYTRACE_STATE_DIR", str(tmp_path / "state"))
    canary = parse_registry(registry, environ={}).routes["chat"].canary
    promote = ["promote", "chat", "--require-verdict", "-r", str(registry)]

    never = runner.invoke(app, promote)
    assert never.exit_code == 1 and "no analysis of it is recorded" in never.stderr

    _record(tmp_path / "state", verdict="HOLD", canary_model=canary, stage=5)
    held = runner.invoke(app, promote)
    assert held.exit_code == 1 and "said HOLD" in held.stderr
    _record(tmp_path / "state", verdict="PROMOTE", canary_model="other-20260101", stage=5)
    assert runner.invoke(app, promote).exit_code == 1  # another candidate's verdict
    assert parse_registry(registry, environ={}).routes["chat"].stage == 5

    _record(tmp_path / "state", verdict="PROMOTE", canary_model=canary, stage=5)
    promoted = runner.invoke(app, promote)
    assert promoted.exit_code == 0, promoted.output
    assert parse_registry(registry, environ={}).routes["chat"].stage == 25


def test_one_promote_verdict_moves_the_canary_one_stage_only(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The verdict judged stage 5; at 25 it no longer applies until analyze runs again."""
    monkeypatch.setenv("CANARYTRACE_STATE_DIR", str(tmp_path / "state"))
    canary = parse_registry(registry, environ={}).routes["chat"].canary
    _record(tmp_path / "state", verdict="PROMOTE", canary_model=canary, stage=5)
    promote = ["promote", "chat", "--require-verdict", "-r", str(registry)]
    assert runner.invoke(app, promote).exit_code == 0
    again = runner.invoke(app, promote)
    assert again.exit_code == 1
    assert "judged stage 5%, the route is now at 25%: a verdict supports one step" in (again.stderr)
    assert "run `canarytrace analyze" in again.stderr and "at its stage now, 25%" in again.stderr
    assert parse_registry(registry, environ={}).routes["chat"].stage == 25


def test_a_verdict_recorded_without_a_stage_supports_no_promotion(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file written before stages were recorded: read, and refused with the reason."""
    monkeypatch.setenv("CANARYTRACE_STATE_DIR", str(tmp_path / "state"))
    canary = parse_registry(registry, environ={}).routes["chat"].canary
    _record(tmp_path / "state", verdict="PROMOTE", canary_model=canary, window_end=None)
    result = runner.invoke(app, ["promote", "chat", "--require-verdict", "-r", str(registry)])
    assert result.exit_code == 1
    assert "(PROMOTE) recorded no stage" in result.stderr
    assert parse_registry(registry, environ={}).routes["chat"].stage == 5


@pytest.mark.parametrize("damaged", ['{"chat": {"verd', "[]"])
def test_a_damaged_verdict_file_refuses_promotion_naming_it(
    registry: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, damaged: str
) -> None:
    monkeypatch.setenv("CANARYTRACE_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "state").mkdir()
    state = tmp_path / "state" / "last-verdict.json"
    state.write_text(damaged)
    result = runner.invoke(app, ["promote", "chat", "--require-verdict", "-r", str(registry)])
    assert result.exit_code == 1 and isinstance(result.exception, SystemExit)
    assert f"error {state}: not a verdict file" in result.stderr
    assert "promotion refused: run `canarytrace analyze`" in result.stderr
    assert parse_registry(registry, environ={}).routes["chat"].stage == 5
    assert state.read_text() == damaged


def test_validate_reports_judge_settings_that_analyze_would_refuse(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "routes:\n  chat:\n    production: a-20240101\n    judge: {confidence: 0.99, bogus: 1}\n"
        "  other:\n    production: a-20240101\n    judge:\n      confidence: 5\n"
        "models:\n  - {id: a-20240101, provider: other}\n"
    )
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 1
    assert f"error {path}:4: routes.chat.judge.bogus: unknown judge setting" in result.stderr
    assert f"error {path}:7: routes.other.judge.confidence: 5.0 must be between" in (result.stderr)
    assert "valid" not in result.stdout


@pytest.mark.parametrize("command", ["status", "validate"])
def test_an_unreadable_registry_is_an_error_not_a_traceback(tmp_path: Path, command: str) -> None:
    dates = tmp_path / "dates.yaml"
    dates.write_text(
        "routes:\n  chat:\n    production: a-20240101\n    upgraded_on: 2024-13-45\n"
        "models:\n  - {id: a-20240101, provider: other}\n"
    )
    latin = tmp_path / "latin.yaml"
    latin.write_bytes(b"routes:\n  chat:\n    production: caf\xe9-20240101\n")
    expected = {
        dates: f"error {dates}:4: routes.chat.upgraded_on: Input should be a valid date",
        latin: f"error {latin}:3: (encoding): byte 0xe9 is not UTF-8",
        tmp_path: f"error {tmp_path}: is a directory; name the registry file itself",
    }
    for path, message in expected.items():
        args = [command, "-r", str(path)] if command == "status" else [command, str(path)]
        result = runner.invoke(app, args)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), path
        assert message in result.stderr
