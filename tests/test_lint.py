"""lint finds every unpinned or dying model id in a sample tree, and nothing in a clean one.

The sample tree marks each expected finding on its line with `# lint: MODEL_ID` (JSON has
no comments: its expectations are the ids it names that the table says are aliases or
retired). Dates are judged as of a fixed day, so the results do not age.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from ruamel.yaml import YAML
from typer.testing import CliRunner

from canarytrace.cli import app
from canarytrace.deprecations import load_table
from canarytrace.lint import anthropic_id, check, lint_paths, model_id_in

LINT = Path(__file__).parent / "fixtures" / "lint"
DAY = dt.date(2026, 11, 25)


def _marked(root: Path) -> set[tuple[str, int, str]]:
    expected = set()
    for path in root.rglob("*"):
        if not path.is_file() or "node_modules" in path.parts:
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            for model_id in re.findall(r"# lint: (\S+)", line):
                expected.add((str(path), number, model_id))
    return expected


def _json_expectations(path: Path, ids: list[str]) -> set[tuple[str, int, str]]:
    lines = path.read_text().splitlines()
    return {
        (str(path), next(n for n, text in enumerate(lines, 1) if f'"{i}"' in text), i) for i in ids
    }


def test_finds_every_marked_id_in_the_sample_tree() -> None:
    root = LINT / "dirty"
    findings = lint_paths([root], as_of=DAY, table=load_table())
    expected = _marked(root) | _json_expectations(
        root / "config" / "registry.json", ["gpt-4-0125-preview", "chatgpt-4o-latest"]
    )
    assert {(f.file, f.line, f.model) for f in findings} == expected


def test_finds_nothing_in_a_clean_tree() -> None:
    assert lint_paths([LINT / "clean"], as_of=DAY, table=load_table()) == []


def test_each_finding_says_why_and_what_to_pin() -> None:
    findings = lint_paths([LINT / "dirty"], as_of=DAY, table=load_table())
    by_model = {f.model: f for f in findings}
    retired = by_model["claude-3-5-sonnet-20241022"]
    assert (retired.kind, retired.suggestion) == ("retired", "claude-sonnet-4-6")
    assert "retired on 2025-10-28" in retired.why
    alias = by_model["claude-3-5-haiku-latest"]
    assert (alias.kind, alias.suggestion) == ("undated-alias", "claude-haiku-4-5-20251001")
    retiring = by_model["gpt-4o-2024-11-20"]
    assert retiring.kind == "retiring" and "in 50 days" in retiring.why
    assert str(retired).startswith(f"{retired.file}:{retired.line}: claude-3-5-sonnet-20241022: ")


def test_an_explicit_file_is_checked_and_skipped_folders_are_not_searched() -> None:
    vendored = LINT / "dirty" / "node_modules" / "pkg" / "index.json"
    assert lint_paths([LINT / "dirty"], as_of=DAY, table=load_table()) != []
    assert all(
        "node_modules" not in f.file
        for f in lint_paths([LINT / "dirty"], as_of=DAY, table=load_table())
    )
    assert [f.model for f in lint_paths([vendored], as_of=DAY, table=load_table())] == ["gpt-4"]


def test_a_file_the_parser_rejects_is_still_scanned_line_by_line(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("llm:\n  model: gpt-4o\n  bad: [unclosed\n")
    (finding,) = lint_paths([broken], as_of=DAY, table=load_table())
    assert (finding.line, finding.model) == (2, "gpt-4o")


def test_dates_decide_between_fine_deprecated_retiring_and_retired() -> None:
    table = load_table()
    kinds = [
        (check("gpt-4o-2024-11-20", day, table) or ("fine",))[0]
        for day in (dt.date(2026, 10, 1), dt.date(2026, 10, 20), DAY, dt.date(2027, 1, 14))
    ]
    assert kinds == ["fine", "deprecated", "retiring", "retired"]


@pytest.mark.parametrize(
    ("value", "model_id"),
    [
        ("gpt-4o", "gpt-4o"),
        ("openai/gpt-4o-2024-11-20", "gpt-4o-2024-11-20"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022-v2:0"),
        ("eu.anthropic.claude-sonnet-4-6", "claude-sonnet-4-6"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-v2@20241022"),
        ("o3-mini", "o3-mini"),
        ("we moved off gpt-4", None),
        ("gpt", None),
        ("/models/claude", None),
    ],
)
def test_what_counts_as_a_model_id(value: str, model_id: str | None) -> None:
    assert model_id_in(value) == model_id


@pytest.mark.parametrize(
    ("model_id", "upstream"),
    [
        ("claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022"),  # Bedrock
        ("claude-sonnet-4-5-20250929-v1:0", "claude-sonnet-4-5-20250929"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-20241022"),  # Vertex AI
        ("claude-3-opus@20240229", "claude-3-opus-20240229"),
        ("claude-3-5-sonnet-20241022", None),  # Anthropic's own spelling
        ("claude-v2:1", None),  # Bedrock's oldest ids name no Anthropic snapshot
        ("gpt-4o-2024-11-20", None),
    ],
)
def test_a_cloud_platforms_spelling_names_anthropics_model(
    model_id: str, upstream: str | None
) -> None:
    assert anthropic_id(model_id) == upstream


def test_a_platform_id_is_judged_by_anthropics_dates_and_says_so() -> None:
    findings = lint_paths([LINT / "dirty"], as_of=DAY, table=load_table())
    bedrock = next(f for f in findings if f.model == "claude-3-5-sonnet-20241022-v2:0")
    assert (bedrock.kind, bedrock.suggestion) == ("retired", "claude-sonnet-4-6")
    assert bedrock.why.startswith("Anthropic's claude-3-5-sonnet-20241022, retired on 2025-10-28")
    assert "the cloud platform sets its own dates" in bedrock.why


def test_the_pre_commit_hook_runs_lint_on_every_kind_of_file_it_reads() -> None:
    hooks = YAML(typ="safe").load(Path(__file__).resolve().parents[1] / ".pre-commit-hooks.yaml")
    (hook,) = hooks
    assert hook["entry"] == "canarytrace lint"
    files = re.compile(hook["files"])
    scanned = [p for p in (LINT / "dirty").rglob("*") if p.is_file()]
    assert scanned and all(files.search(p.relative_to(LINT).as_posix()) for p in scanned)
    assert not files.search("README.md")


# --- the CLI on files that are odd, missing or unreadable -----------------------------------


def _lint(*paths: Path | str) -> tuple[int, list[tuple[str, int, str]], str]:
    """Exit code, (file name, line, id) of each finding in printed order, and stderr."""
    result = CliRunner().invoke(app, ["lint", *map(str, paths), "--as-of", DAY.isoformat()])
    found = [line.split(": ")[:2] for line in result.stdout.splitlines()]
    where = [(Path(place.rsplit(":", 1)[0]).name, int(place.rsplit(":", 1)[1]), model)
             for place, model in found]  # fmt: skip
    return result.exit_code, where, result.stderr


def test_a_path_that_does_not_exist_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "app.py").write_text('MODEL = "gpt-4o"\n')
    monkeypatch.chdir(tmp_path)  # a short path: the error box would cut a long one
    code, findings, stderr = _lint("does-not-exist", "app.py")
    assert code == 2 and findings == []
    assert "does-not-exist" in stderr


def test_a_file_that_is_not_utf8_is_linted_and_said_to_be(tmp_path: Path) -> None:
    latin = tmp_path / "latin.py"
    latin.write_bytes('model = "gpt-4o"\n# café\n'.encode("latin-1"))
    code, findings, stderr = _lint(latin)
    assert (code, findings) == (1, [("latin.py", 1, "gpt-4o")])
    assert f"{latin}: not UTF-8" in stderr


def test_a_file_that_cannot_be_read_fails_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    locked, open_ = tmp_path / "locked.yaml", tmp_path / "open.yaml"
    locked.write_text("model: gpt-4\n")
    open_.write_text("model: gpt-5-2025-08-07\n")
    read_bytes = Path.read_bytes

    def refuse_locked(path: Path) -> bytes:
        if path == locked:  # as root, chmod 000 does not stop a read: refuse it here
            raise PermissionError(13, "Permission denied", str(path))
        return read_bytes(path)

    monkeypatch.setattr(Path, "read_bytes", refuse_locked)
    code, findings, stderr = _lint(tmp_path)
    assert (code, findings) == (2, [])
    assert f"{locked}: not read (Permission denied)" in stderr


@pytest.mark.parametrize(
    ("odd", "reason"),
    [
        ("released: 2024-02-30\n", "day is out of range for month"),  # ruamel: ValueError
        ("deep: " + "[" * 600 + "]" * 600 + "\n", "nested too deeply"),  # RecursionError
    ],
)
def test_a_yaml_file_the_parser_cannot_build_is_read_line_by_line(
    tmp_path: Path, odd: str, reason: str
) -> None:
    (tmp_path / "app.py").write_text('MODEL = "gpt-4"\n')
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("model: gpt-4o\n" + odd)
    code, findings, stderr = _lint(tmp_path)
    assert (code, findings) == (1, [("app.py", 1, "gpt-4"), ("cfg.yaml", 1, "gpt-4o")])
    assert f"{cfg}: not parsed ({reason}): read line by line" in stderr


def test_an_id_completed_at_run_time_is_not_judged_and_literals_are_joined(
    tmp_path: Path,
) -> None:
    app_py = tmp_path / "app.py"
    app_py.write_text(
        'date = "2024-08-06"\n'
        'create(model=f"gpt-4o-{date}")\n'
        'create(model="gpt-5" + "-2025-08-07")\n'
        'create(model="gpt-4o" + suffix)\n'
        'create(model="claude-3-5-sonnet" + "-latest")\n'
        'create(model="gpt-4o-" + f"{date}")\n'
        'create(model=f"gpt-4")\n'
    )
    code, findings, _ = _lint(app_py)
    assert (code, findings) == (
        1, [("app.py", 5, "claude-3-5-sonnet-latest"), ("app.py", 7, "gpt-4")]
    )  # fmt: skip


def test_findings_are_in_file_line_and_column_order(tmp_path: Path) -> None:
    (tmp_path / "b.py").write_text(
        'def ask():\n    return create(model="gpt-4")\nMODEL = [["gpt-4o"], "o1"]\n'
    )
    (tmp_path / "a.yaml").write_text("model: gpt-4\n")
    code, findings, _ = _lint(tmp_path / "b.py", tmp_path / "a.yaml")
    assert (code, findings) == (
        1,
        [("a.yaml", 1, "gpt-4"), ("b.py", 2, "gpt-4"), ("b.py", 3, "gpt-4o"), ("b.py", 3, "o1")],
    )
