"""Registry: every mistake reported once with file, line and key; the alias rule; env overrides."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import pytest

from canarytrace.errors import RegistryError
from canarytrace.registry import (
    InvalidRegistryError,
    env_var,
    is_pinned,
    key_lines,
    load_registry,
    parse_registry,
)

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
MALFORMED = sorted(p.name for p in FIXTURES.glob("*.yaml") if "# expect:" in p.read_text())


def _expectation(path: Path) -> tuple[int, str, str]:
    """The line holding `# expect: KEY | FRAGMENT` in a fixture, and what it expects."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        match = re.search(r"# expect: (\S+) \| (.+)$", line)
        if match:
            return number, match.group(1), match.group(2)
    raise AssertionError(f"{path} has no expectation")


@pytest.mark.parametrize("name", MALFORMED)
def test_each_malformed_registry_gets_one_message_with_file_line_and_key(name: str) -> None:
    path = FIXTURES / name
    line, key, fragment = _expectation(path)
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(path, environ={})
    (problem,) = caught.value.problems
    assert (problem.file, problem.line, problem.key) == (str(path), line, key)
    assert fragment in problem.message
    assert str(caught.value) == f"{path}:{line}: {key}: {problem.message}"


def test_the_malformed_cases_cover_the_issue_list() -> None:
    keys = {_expectation(FIXTURES / name)[2] for name in MALFORMED}
    for mistake in (
        "unknown key",
        "valid integer",
        "not among the stages",
        "equals production",
        "not in the models list",
        "duplicate id",
        "undated alias",
    ):
        assert any(mistake in k for k in keys), mistake


def test_all_mistakes_of_a_file_are_reported_together() -> None:
    path = FIXTURES / "many_mistakes.yaml"
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(path, environ={})
    where = {(p.line, p.key) for p in caught.value.problems}
    assert where == {
        (9, "models[0].provider"),
        (6, "routes.chat.stage"),
        (5, "routes.chat.canary"),
    }


def test_json_registry_reports_the_line_too() -> None:
    path = FIXTURES / "wrong_type.json"
    stage_line = next(
        n for n, text in enumerate(path.read_text().splitlines(), 1) if '"stage"' in text
    )
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(path, environ={})
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (stage_line, "routes.chat.stage")


def test_json_and_yaml_with_the_same_content_load_the_same(tmp_path: Path) -> None:
    yaml_registry = parse_registry(FIXTURES / "valid.yaml", environ={})
    as_json = tmp_path / "models.json"
    as_json.write_text(yaml_registry.model_dump_json(indent=2))
    assert parse_registry(as_json, environ={}) == yaml_registry


def test_a_missing_file_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match="no such registry file; create one"):
        load_registry(tmp_path / "models.yaml")


def test_allow_alias_accepts_an_alias_on_purpose() -> None:
    registry = parse_registry(FIXTURES / "alias_allowed.yaml", environ={})
    assert registry.routes["summarize"].production == "gpt-4o"


@pytest.mark.parametrize(
    "model_id",
    [
        "claude-3-5-sonnet-20241022",
        "gpt-4o-2024-11-20",
        "gpt-4-0125-preview",
        "claude-3-5-sonnet-v2@20241022",
        "gemini-1.5-pro-001",
        "anthropic.claude-3-5-sonnet-20241022-v2:0",
        "claude-sonnet-4-6",  # a dateless snapshot, per the deprecation table
        "claude-fable-5",  # Anthropic's Fable ids carry no date either
        "claude-fable-5-1",
    ],
)
def test_pinned_ids(model_id: str) -> None:
    assert is_pinned(model_id)


@pytest.mark.parametrize(
    "model_id",
    [
        "gpt-4",
        "gpt-4o",
        "claude-3-5-sonnet-latest",
        "claude-sonnet-4-5",
        "gemini-1.5-pro",
        "gpt-4.1",
        "my-own-model",
    ],
)
def test_unpinned_ids(model_id: str) -> None:
    assert not is_pinned(model_id)


def test_find_model_names_route_and_tier() -> None:
    registry = parse_registry(FIXTURES / "valid.yaml", environ={})
    assert registry.find_model("claude-opus-4-8") == ("chat", "canary")
    assert registry.find_model("claude-3-opus-20240229") == ("chat", "fallback")
    assert registry.find_model("gpt-4o-2024-11-20") is None


def test_environment_overrides_a_routes_tiers() -> None:
    environ = {
        env_var("chat", "canary"): "",
        env_var("chat", "stage"): "0",
        env_var("chat", "production"): "claude-opus-4-8",
    }
    assert environ.keys() == {
        "CANARYTRACE_ROUTE_CHAT_CANARY",
        "CANARYTRACE_ROUTE_CHAT_STAGE",
        "CANARYTRACE_ROUTE_CHAT_PRODUCTION",
    }
    chat = parse_registry(FIXTURES / "valid.yaml", environ=environ).routes["chat"]
    assert (chat.production, chat.canary, chat.stage) == ("claude-opus-4-8", None, 0)


def test_environment_overrides_pass_the_same_checks() -> None:
    environ = {"CANARYTRACE_ROUTE_CHAT_CANARY": "claude-sonnet-4-6"}
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(FIXTURES / "valid.yaml", environ=environ)
    (problem,) = caught.value.problems
    assert problem.file == "environment $CANARYTRACE_ROUTE_CHAT_CANARY"
    assert "equals production" in problem.message


def test_a_misspelt_override_is_an_error_not_ignored() -> None:
    with pytest.raises(InvalidRegistryError, match="CANARYTRACE_ROUTE_CHAT_CANRY: names no"):
        parse_registry(FIXTURES / "valid.yaml", environ={"CANARYTRACE_ROUTE_CHAT_CANRY": "x"})


def test_route_names_become_variable_names() -> None:
    assert env_var("chat-v2.eu", "fallback") == "CANARYTRACE_ROUTE_CHAT_V2_EU_FALLBACK"


def test_loading_never_refuses_a_retired_model_but_logs_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # claude-3-opus-20240229 retired on 2026-01-05: routing keeps working, with a warning.
    path = tmp_path / "models.yaml"
    shutil.copy(FIXTURES / "valid.yaml", path)
    with caplog.at_level(logging.WARNING, logger="canarytrace.registry"):
        registry = load_registry(path, environ={})
    assert registry.routes["chat"].fallback == "claude-3-opus-20240229"
    assert any("claude-3-opus-20240229 retired on 2026-01-05" in r.message for r in caplog.records)


def test_key_lines_point_at_each_key() -> None:
    lines = key_lines(FIXTURES / "valid.yaml")
    assert lines[("routes", "chat", "fallback")] == 6
    assert lines[("models", 2, "id")] == 13


def test_an_impossible_date_is_a_problem_with_line_and_key(tmp_path: Path) -> None:
    """ruamel raises a bare ValueError for 2024-13-45; the schema reports it instead."""
    path = tmp_path / "models.yaml"
    path.write_text(
        "routes:\n  chat:\n    production: a-20240101\n    upgraded_on: 2024-13-45\n"
        "models:\n  - {id: a-20240101, provider: other, pinned_date: 2026-02-30}\n"
    )
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(path, environ={})
    where = {(p.file, p.line, p.key) for p in caught.value.problems}
    assert where == {
        (str(path), 4, "routes.chat.upgraded_on"),
        (str(path), 6, "models[0].pinned_date"),
    }
    assert all("YYYY-MM-DD" in p.message for p in caught.value.problems)


def test_a_directory_is_a_registry_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(RegistryError, match=f"^{re.escape(str(tmp_path))}: is a directory; "):
        parse_registry(tmp_path, environ={})


def test_a_file_that_is_not_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_bytes(
        b"routes:\n  chat:\n    production: a-20240101\n"
        b"models:\n  - {id: a-20240101, provider: other, why: caf\xe9}\n"
    )
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(path, environ={})
    (problem,) = caught.value.problems
    assert (problem.line, problem.key) == (5, "(encoding)")
    assert "0xe9 is not UTF-8; save the file as UTF-8" in problem.message


def test_numbers_and_flags_must_be_written_as_such(tmp_path: Path) -> None:
    """pydantic's lax mode read `stage: true` as 1 and `rollback: "yes"` as true."""
    path = tmp_path / "models.yaml"
    path.write_text(
        "routes:\n  chat:\n    production: a-20240101\n    canary: b-20240101\n"
        '    stage: true\n    stages: [5, "25"]\n    rollback: "yes"\n'
        "models:\n  - {id: a-20240101, provider: other, tested: 1}\n"
    )
    with pytest.raises(InvalidRegistryError) as caught:
        parse_registry(path, environ={})
    assert {(p.line, p.key) for p in caught.value.problems} == {
        (5, "routes.chat.stage"),
        (6, "routes.chat.stages[1]"),
        (7, "routes.chat.rollback"),
        (9, "models[0].tested"),
    }
