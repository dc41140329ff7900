"""promote and rollback edit only the values they change; comments and order survive."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest

from canarytrace.deprecations import load_table
from canarytrace.errors import RoutingError
from canarytrace.registry import key_lines, parse_registry
from canarytrace.registry_write import clear_rollback, promote, rollback

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
DAY = dt.date(2026, 11, 25)


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    shutil.copy(FIXTURES / "commented.yaml", path)
    return path


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines(keepends=True)


def test_promote_changes_only_the_stage_value(registry: Path) -> None:
    before = _lines(registry)
    stage_line = key_lines(registry)[("routes", "chat", "stage")]

    change = promote(registry, "chat", today=DAY)

    expected = list(before)
    expected[stage_line - 1] = before[stage_line - 1].replace("stage: 5 ", "stage: 25", 1)
    assert _lines(registry) == expected
    assert (change.before.stage, change.after.stage) == (5, 25)


def test_rollback_sets_the_flag_and_records_reason_and_day(registry: Path) -> None:
    before = _lines(registry)
    flag_line = key_lines(registry)[("routes", "summarize", "rollback")]

    rollback(registry, "summarize", "error burst", today=DAY)

    indent = "    "
    expected = [
        *before[: flag_line - 1],
        f"{indent}rollback: true\n",
        f"{indent}rollback_reason: error burst\n",
        f"{indent}rolled_back_on: {DAY.isoformat()}\n",
        *before[flag_line:],
    ]
    assert _lines(registry) == expected
    route = parse_registry(registry, environ={}).routes["summarize"]
    assert (route.rollback, route.rollback_reason, route.rolled_back_on) == (
        True,
        "error burst",
        DAY,
    )


def test_a_key_added_after_the_last_one_leaves_the_next_routes_comment_in_place(
    registry: Path,
) -> None:
    rollback(registry, "chat", "latency regression", today=DAY)
    text = registry.read_text()
    reason_at = text.index("rollback_reason: latency regression")
    comment_at = text.index("# Summaries: moving to the newer GPT-4o snapshot.")
    assert reason_at < text.index("rolled_back_on:") < comment_at < text.index("summarize:")


def test_clearing_a_rollback_restores_the_file_exactly(registry: Path) -> None:
    original = registry.read_text()
    rollback(registry, "chat", "error burst", today=DAY)
    clear_rollback(registry, "chat")
    assert registry.read_text() == original


def test_promoting_past_the_last_stage_completes_the_upgrade(registry: Path) -> None:
    original = registry.read_text()
    stages = []
    for _ in range(3):
        stages.append(promote(registry, "chat", today=DAY).after.stage)
    assert stages == [25, 50, 100]

    change = promote(registry, "chat", today=DAY)

    assert change.completed
    chat = parse_registry(registry, environ={}).routes["chat"]
    assert (chat.production, chat.canary, chat.fallback) == (
        "claude-opus-4-8",
        None,
        "claude-sonnet-4-6",
    )
    assert (chat.stage, chat.upgraded_on) == (0, DAY)
    # Every comment line survives; only the removed canary's own end-of-line comment goes.
    kept = registry.read_text()
    for line in original.splitlines():
        if line.lstrip().startswith("#"):
            assert line in kept
    assert "# deeper reasoning" not in kept
    assert "# since 2026-03" in kept


def test_promotion_is_refused_while_rolled_back(registry: Path) -> None:
    rollback(registry, "chat", "error burst", today=DAY)
    before = registry.read_text()
    with pytest.raises(RoutingError, match="rolled back \\(error burst\\)"):
        promote(registry, "chat", today=DAY)
    assert registry.read_text() == before


def test_promotion_of_a_retired_canary_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(
        "routes:\n"
        "  chat:\n"
        "    production: claude-sonnet-4-6\n"
        "    canary: claude-3-opus-20240229\n"
        "    stage: 5\n"
        "models:\n"
        "  - {id: claude-sonnet-4-6, provider: anthropic}\n"
        "  - {id: claude-3-opus-20240229, provider: anthropic}\n"
    )
    before = path.read_text()
    # Claude 3 Opus retired on 2026-01-05: fine the day before, refused on the day.
    promote(path, "chat", today=dt.date(2026, 1, 4), table=load_table())
    with pytest.raises(RoutingError, match="retired on 2026-01-05"):
        promote(path, "chat", today=dt.date(2026, 1, 5), table=load_table())
    assert "stage: 25" in path.read_text() and before != path.read_text()


def test_promotion_needs_a_canary_and_a_known_route(registry: Path) -> None:
    for _ in range(4):
        promote(registry, "chat", today=DAY)
    with pytest.raises(RoutingError, match="no canary to promote"):
        promote(registry, "chat", today=DAY)
    with pytest.raises(RoutingError, match="no route 'search'"):
        promote(registry, "search", today=DAY)


def test_rollback_needs_a_reason(registry: Path) -> None:
    with pytest.raises(RoutingError, match="needs a reason"):
        rollback(registry, "chat", "  ", today=DAY)


def test_json_registry_keeps_its_order_and_indentation(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    data = {
        "routes": {"chat": {"production": "claude-sonnet-4-6", "canary": "claude-opus-4-8"}},
        "models": [
            {"id": "claude-sonnet-4-6", "provider": "anthropic"},
            {"id": "claude-opus-4-8", "provider": "anthropic"},
        ],
    }
    path.write_text(json.dumps(data, indent=4) + "\n")

    promote(path, "chat", today=DAY)

    data["routes"]["chat"]["stage"] = 5
    assert path.read_text() == json.dumps(data, indent=4) + "\n"


def test_a_second_rollback_keeps_the_first_reason_and_date(registry: Path) -> None:
    """It overwrote them without a word: the incident's cause and day were lost."""
    rollback(registry, "chat", "error burst", today=DAY)
    before = registry.read_bytes()
    again = rollback(registry, "chat", "still broken?", today=DAY + dt.timedelta(days=2))
    assert again.summary == f"already rolled back since {DAY} (error burst)"
    assert registry.read_bytes() == before
