"""`canarytrace snapshots review` on a prepared set of old/new snapshots in a real git repo.

fixtures/review/old.llm is what the production model wrote, new.llm what the canary wrote
for the same tests: rephrasing, a format change, a more concise answer, an identical
answer, a changed meaning, a lost fact, a dropped required phrase, a far longer answer, a
refusal, JSON that no longer parses, plus one added and one removed snapshot.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from syrupy.data import Snapshot, SnapshotCollection
from syrupy.extensions.amber.serializer import AmberDataSerializer
from typer.testing import CliRunner

from canarytrace.cli import app
from canarytrace.errors import SnapshotError
from canarytrace.snapshots.record import Checks, LLMOutput, Record
from canarytrace.snapshots.review import review
from canarytrace.snapshots.similarity import Similarity

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "review"
SNAPSHOT = Path("tests/__snapshots__/test_answers.llm")

EXPECTED = {
    "test_rephrased": ("acceptable", "rephrased"),
    "test_reformatted": ("acceptable", "reformatted"),
    "test_more_concise": ("acceptable", "more concise"),
    "test_meaning_changed": ("worrying", "meaning changed"),
    "test_lost_fact": ("worrying", "required information lost"),
    "test_lost_required_phrase": ("worrying", "required information lost"),
    "test_far_longer": ("worrying", "far longer"),
    "test_refusal": ("worrying", "now a refusal"),
    "test_broken_json": ("worrying", "now fails to parse"),
}


def git(root: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path: Path, local_model: Similarity) -> Path:
    """A repo whose HEAD holds the production model's snapshots; the canary's in the tree."""
    git(tmp_path, "init", "-q")
    git(tmp_path, "config", "user.email", "t@example.com")
    git(tmp_path, "config", "user.name", "t")
    (tmp_path / SNAPSHOT).parent.mkdir(parents=True)
    shutil.copy(FIXTURES / "old.llm", tmp_path / SNAPSHOT)
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-q", "-m", "snapshots of claude-3-5-sonnet-20241022")
    shutil.copy(FIXTURES / "new.llm", tmp_path / SNAPSHOT)
    return tmp_path


def test_review_classifies_every_kind_of_change(repo: Path) -> None:
    result = review(root=repo)
    got = {
        c.name: (c.classification.verdict, c.classification.kind)
        for c in result.changes
        if c.classification
    }
    assert got == EXPECTED
    others = {(c.name, c.status) for c in result.changes if c.classification is None}
    assert others == {("test_added", "added"), ("test_removed", "removed")}
    # The same text written by another model is no change to review: only its header moved.
    assert "test_same_text_new_model" not in {c.name for c in result.changes}
    assert result.unchanged == 1
    by_name = {c.name: c for c in result.changes}
    lost = by_name["test_lost_required_phrase"].classification
    assert lost is not None and "missing required 'two-factor code'" in lost.reason
    fact = by_name["test_lost_fact"].classification
    assert fact is not None and "1889, 330" in fact.reason
    changed = by_name["test_meaning_changed"]
    assert changed.old is not None and changed.old.model == "claude-3-5-sonnet-20241022"
    assert changed.new is not None and changed.new.model == "claude-3-opus-20241219"


def test_cli_review_fails_on_worrying_changes_and_writes_html(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(repo)
    report = repo / "review.html"
    result = CliRunner().invoke(app, ["snapshots", "review", "--html", str(report)])
    assert result.exit_code == 1, result.output
    summary = "9 changed since HEAD: 3 acceptable, 6 worrying; 1 added, 1 removed, 1 unchanged"
    assert summary in result.output
    page = report.read_text(encoding="utf-8")
    assert page.count('<tr class="worrying">') == 6
    assert page.count('<tr class="acceptable">') == 3
    assert "I&#x27;m sorry, but I can&#x27;t help with that request." in page


def test_cli_review_passes_when_every_change_is_acceptable(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = AmberDataSerializer.read_file(str(FIXTURES / "old.llm"))
    new = AmberDataSerializer.read_file(str(FIXTURES / "new.llm"))
    mixed = SnapshotCollection(location=str(repo / SNAPSHOT))
    for snapshot in old:
        acceptable = EXPECTED.get(snapshot.name, ("",))[0] == "acceptable"
        mixed.add(new.get(snapshot.name) if acceptable else snapshot)
    AmberDataSerializer.write_file(mixed)
    monkeypatch.chdir(repo)
    result = CliRunner().invoke(app, ["snapshots", "review"])
    assert result.exit_code == 0, result.output
    assert "3 changed since HEAD: 3 acceptable, 0 worrying" in result.output


def test_an_unknown_base_revision_is_a_clear_error(repo: Path) -> None:
    with pytest.raises(SnapshotError, match=r"--base v9\.9: not a commit of"):
        review("v9.9", root=repo)


def test_outside_git_the_cli_says_so_with_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    result = CliRunner().invoke(app, ["snapshots", "review"])
    assert result.exit_code == 2
    assert "not a git repository" in result.output


def _commit_then_write(root: Path, before: dict[str, Record], after: dict[str, Record]) -> None:
    """A repo whose HEAD holds `before` as one amber file, with `after` in the tree."""
    git(root, "init", "-q")
    git(root, "config", "user.email", "t@example.com")
    git(root, "config", "user.name", "t")
    (root / SNAPSHOT).parent.mkdir(parents=True)
    for records, commit in ((before, True), (after, False)):
        collection = SnapshotCollection(location=str(root / SNAPSHOT))
        for name, record in records.items():
            collection.add(Snapshot(name=name, data=record.render()))
        AmberDataSerializer.write_file(collection)
        if commit:
            git(root, "add", ".")
            git(root, "commit", "-q", "-m", "snapshots")


def test_test_ids_in_brackets_are_shown_whole_not_read_as_markup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A parametrized id such as `[/api/refund]` is a closing tag to rich: the table
    crashed, or dropped every `[id]` so two tests read as one."""
    paris = "The capital of France is Paris, on the Seine."
    before = {
        "test_route[/api/refund]": Record(paris, model="old-model-20250101"),
        "test_route[capital]": Record(paris, model="old-model-20250101"),
    }
    after = {name: Record("Blue whales eat krill.", model="new-model-20260101") for name in before}
    _commit_then_write(tmp_path, before, after)
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, ["snapshots", "review", "--embedder", "lexical"])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "test_route[/api/refund]" in result.output
    assert "test_route[capital]" in result.output
    assert "(install canarytrace[embeddings])" in result.output


def test_an_output_that_fails_its_own_checks_is_worrying_even_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Recorded under --snapshot-update, an output is written whatever its checks say:
    the review is where it must not pass, whether added or of unchanged text."""
    fourteen = "Customers have 14 days to ask for a refund."
    wants_30 = LLMOutput(fourteen, must_contain=["30 days"], must_not_contain=["14 days"])
    before = {"test_kept": Record(fourteen, model="old-model-20250101")}
    after = {
        "test_kept": Record(fourteen, model="new-model-20260101", checks=wants_30.checks),
        "test_new": Record(fourteen, model="new-model-20260101", checks=wants_30.checks),
    }
    _commit_then_write(tmp_path, before, after)
    result = review(root=tmp_path, embedder="lexical")
    by_name = {c.name: c for c in result.changes}
    assert {(c.name, c.status) for c in result.worrying} == {
        ("test_kept", "unchanged"),
        ("test_new", "added"),
    }
    verdict = by_name["test_new"].classification
    assert verdict is not None and verdict.kind == "required information lost"
    assert "missing required '30 days'" in verdict.reason
    assert "contains forbidden '14 days'" in verdict.reason
    monkeypatch.chdir(tmp_path)
    cli = CliRunner().invoke(app, ["snapshots", "review", "--embedder", "lexical"])
    assert cli.exit_code == 1, cli.output
    assert "2 added or unchanged fail their own checks" in cli.output
    # The same text with checks it passes is neither listed nor worrying.
    fine = Record(fourteen, model="new-model-20260101", checks=Checks(must_contain=("14 days",)))
    (tmp_path / "ok").mkdir()
    _commit_then_write(tmp_path / "ok", before, {"test_kept": fine})
    assert review(root=tmp_path / "ok", embedder="lexical").changes == ()
