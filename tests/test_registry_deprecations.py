"""The deprecation table: shipped dates, a team's own file on top, and the lifecycle policy."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from canarytrace.cli import app
from canarytrace.deprecations import ENV_TABLE, Lifecycle, load_table
from canarytrace.errors import RegistryError
from canarytrace.registry import is_pinned, parse_registry

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
EXAMPLE = Path(__file__).resolve().parents[1] / "models.yaml"


def test_every_model_of_the_example_is_covered_or_knowingly_absent() -> None:
    table = load_table()
    registry = parse_registry(EXAMPLE, environ={})
    unknown = {m for _, _, m in registry.model_ids() if table.get(m) is None}
    # The article's canary is named by no provider; every other id has provider dates.
    assert unknown == {"claude-3-opus-20241219"}
    for _, _, model_id in registry.model_ids():
        entry = table.get(model_id)
        if entry is not None:
            assert entry.retires and entry.source and entry.source.startswith("https://")


def test_successors_of_the_example_are_in_the_table_too() -> None:
    table = load_table()
    for retired in ("claude-3-5-sonnet-20241022", "claude-3-opus-20240229", "gpt-4o-2024-11-20"):
        replacement = table.get(retired).replacement
        assert table.assess(replacement, dt.date(2026, 11, 25)).lifecycle is Lifecycle.ACTIVE


def test_the_60_day_window() -> None:
    table = load_table()
    retires = table.get("gpt-4o-2024-11-20").retires
    at = {
        days: table.assess("gpt-4o-2024-11-20", retires - dt.timedelta(days=days))
        for days in (61, 60, 1, 0)
    }
    assert [at[d].lifecycle for d in (61, 60, 1, 0)] == [
        Lifecycle.DEPRECATED,
        Lifecycle.RETIRING,
        Lifecycle.RETIRING,
        Lifecycle.RETIRED,
    ]
    assert at[60].warned and not at[60].refused and at[0].refused


def test_a_team_file_overrides_and_extends_the_shipped_table(tmp_path: Path) -> None:
    own = tmp_path / "deprecations.yaml"
    own.write_text(
        "models:\n"
        "  gpt-4o-2024-11-20:\n"
        "    provider: openai\n"
        "    retires: 2027-06-30\n"
        "    source: https://example.com/our-contract\n"
        "  gpt-6-luna:\n"
        "    provider: openai\n"
        "    snapshot: true\n"
        "aliases:\n"
        "  our-default: gpt-6-luna\n"
    )
    table = load_table(own)
    assert table.get("gpt-4o-2024-11-20").retires == dt.date(2027, 6, 30)
    assert table.get("claude-3-opus-20240229") is not None  # the shipped rows stay
    assert is_pinned("gpt-6-luna", table) and not is_pinned("gpt-6-luna", load_table())
    assert not is_pinned("our-default", table)


def test_a_malformed_team_file_names_file_and_line(tmp_path: Path) -> None:
    own = tmp_path / "deprecations.yaml"
    own.write_text("models:\n  gpt-4o-2024-11-20:\n    retire: 2027-06-30\n")
    with pytest.raises(RegistryError, match=r"deprecations.yaml:2: models.gpt-4o-2024-11-20"):
        load_table(own)


def test_a_broken_environment_file_never_breaks_the_alias_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_TABLE, str(tmp_path / "missing.yaml"))
    assert is_pinned("claude-sonnet-4-6") and not is_pinned("gpt-4o")
    with pytest.raises(RegistryError, match="cannot read the deprecation file"):
        load_table()


def test_the_cli_takes_a_team_file(tmp_path: Path) -> None:
    own = tmp_path / "deprecations.yaml"
    own.write_text("models:\n  claude-opus-4-8:\n    retires: 2026-12-01\n")

    def validate(day: str) -> Result:
        args = ["validate", str(FIXTURES / "valid.yaml"), "--as-of", day]
        return CliRunner().invoke(app, [*args, "--deprecations", str(own)])

    assert is_pinned("claude-opus-4-8", load_table(own))  # the shipped snapshot flag stays
    assert "routes.chat.canary" not in validate("2025-12-01").stderr
    soon = validate("2026-11-01")
    assert soon.exit_code == 1  # claude-3-opus-20240229 is retired by then anyway
    assert "routes.chat.canary: claude-opus-4-8 retires on 2026-12-01, in 30 days" in soon.stderr
    assert (
        "routes.chat.canary: claude-opus-4-8 retired on 2026-12-01" in validate("2026-12-01").stderr
    )
