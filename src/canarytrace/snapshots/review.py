"""Review an update of LLM snapshots: what changed since a git revision, and is it worrying?

After `pytest --model canary --snapshot-update`, `git diff __snapshots__/` shows that every
output changed, which says nothing. This compares each `*.llm` snapshot of the working
tree with the same snapshot at a revision (default HEAD), classifies every change with
`classify` (the checks recorded in the new snapshot's header apply), and returns rows for
a summary table, an HTML side-by-side report, and an exit code that fails CI on any
worrying change. All texts are embedded in one batch through the cache, so reviewing
hundreds of snapshots is quick after the first time.
"""

from __future__ import annotations

import html
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from canarytrace.errors import SnapshotError
from canarytrace.snapshots.classify import Classification, against_own_checks, classify
from canarytrace.snapshots.record import Record
from canarytrace.snapshots.similarity import shared_similarity

if TYPE_CHECKING:
    from rich.table import Table

SUFFIX = ".llm"  # LLMSnapshotExtension.file_extension, without importing syrupy here


@dataclass(frozen=True)
class Change:
    """One snapshot that differs between the revision and the working tree."""

    file: str  # path relative to the repository root
    name: str  # the snapshot's name (the test)
    status: Literal["changed", "added", "removed", "unchanged"]
    old: Record | None
    new: Record | None
    # For "changed"; for "added" and "unchanged" (the same text, maybe by another model)
    # only when the text fails its own checks.
    classification: Classification | None

    @property
    def worrying(self) -> bool:
        """A snapshot classified worrying."""
        return self.classification is not None and not self.classification.acceptable


@dataclass(frozen=True)
class Review:
    """Every changed, added and removed snapshot, those of the same text that fail their
    own checks, and how many stayed the same (text; the header may name another model)."""

    base: str
    changes: tuple[Change, ...]
    unchanged: int
    similarity_label: str

    @property
    def worrying(self) -> tuple[Change, ...]:
        """The changes that should fail CI."""
        return tuple(c for c in self.changes if c.worrying)


def _git(root: Path, *args: str) -> str:
    try:
        done = subprocess.run(
            ["git", "-C", str(root), *args], capture_output=True, text=True, check=False
        )
    except FileNotFoundError as exc:
        raise SnapshotError(
            "git is not installed; the review compares with a git revision"
        ) from exc
    if done.returncode:
        raise SnapshotError(f"git {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def _read(text: str, where: str) -> dict[str, Record]:
    from syrupy.extensions.amber.serializer import AmberDataSerializer

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "snapshot.llm"
        path.write_text(text, encoding="utf-8")
        collection = AmberDataSerializer.read_file(str(path))
    return {
        s.name: Record.parse(str(s.data), where=f"{where}::{s.name}")
        for s in collection
        if s.data is not None
    }


def review(base: str = "HEAD", *, root: Path | None = None, embedder: str | None = None) -> Review:
    """Compare the `*.llm` snapshots of the working tree under `root` with revision `base`.

    Raises SnapshotError when `root` is not in a git repository or `base` is unknown.
    """
    start = (root or Path.cwd()).resolve()
    top = Path(_git(start, "rev-parse", "--show-toplevel").strip())
    try:
        _git(top, "rev-parse", "--verify", f"{base}^{{commit}}")
    except SnapshotError as exc:
        raise SnapshotError(f"--base {base}: not a commit of {top} ({exc})") from exc
    prefix = start.relative_to(top).as_posix() + "/" if start != top else ""
    old_files = {
        f
        for f in _git(top, "ls-tree", "-r", "--name-only", base).splitlines()
        if f.endswith(SUFFIX) and f.startswith(prefix)
    }
    new_files = {
        f
        for f in _git(top, "ls-files", "-co", "--exclude-standard").splitlines()
        if f.endswith(SUFFIX) and f.startswith(prefix) and (top / f).is_file()
    }
    pairs: list[tuple[str, str, Record | None, Record | None]] = []
    for file in sorted(old_files | new_files):
        old = (
            _read(_git(top, "show", f"{base}:{file}"), f"{base}:{file}")
            if file in old_files
            else {}
        )
        new = _read((top / file).read_text(encoding="utf-8"), file) if file in new_files else {}
        for name in sorted(old.keys() | new.keys()):
            pairs.append((file, name, old.get(name), new.get(name)))
    return _classify_all(base, pairs, embedder)


def _classify_all(
    base: str, pairs: list[tuple[str, str, Record | None, Record | None]], embedder: str | None
) -> Review:
    similarity = shared_similarity(embedder)
    changed = [(o, w) for _, _, o, w in pairs if o and w and o.text != w.text]
    similarity.prefetch([r.text for pair in changed for r in pair])  # one batch
    changes: list[Change] = []
    unchanged = 0
    for file, name, old, new in pairs:
        if old is None and new is not None:
            own = against_own_checks(new.text, new.checks)
            changes.append(Change(file, name, "added", old, new, None if own.acceptable else own))
        elif new is None:
            changes.append(Change(file, name, "removed", old, new, None))
        elif old is not None and old.text != new.text:
            verdict = classify(
                old.text,
                new.text,
                similarity=similarity(old.text, new.text),
                threshold=similarity.default_threshold,
                checks=new.checks,
            )
            changes.append(Change(file, name, "changed", old, new, verdict))
        else:
            unchanged += 1
            own = against_own_checks(new.text, new.checks)
            if not own.acceptable:  # checks added or tightened since
                changes.append(Change(file, name, "unchanged", old, new, own))
    return Review(base, tuple(changes), unchanged, similarity.label)


def summary(result: Review) -> str:
    """One line: how many changed, acceptable, worrying, added, removed."""
    changed = [c for c in result.changes if c.status == "changed"]
    worrying = sum(c.worrying for c in changed)
    added = sum(c.status == "added" for c in result.changes)
    removed = sum(c.status == "removed" for c in result.changes)
    failing = sum(c.worrying for c in result.changes if c.status != "changed")
    own = f"; {failing} added or unchanged fail their own checks" if failing else ""
    return (
        f"{len(changed)} changed since {result.base}: {len(changed) - worrying} acceptable, "
        f"{worrying} worrying; {added} added, {removed} removed, {result.unchanged} unchanged"
        f"{own} (similarity: {result.similarity_label})"
    )


def _models(change: Change) -> str:
    old = change.old.model if change.old and change.old.model else "?"
    new = change.new.model if change.new and change.new.model else "?"
    return old if old == new else f"{old} → {new}"


def table(result: Review) -> Table:
    """The summary table for the terminal: one row per change, the model once if shared."""
    from rich.table import Table
    from rich.text import Text

    models = {_models(c) for c in result.changes if c.status == "changed"}
    shared = models.pop() if len(models) == 1 else None
    files = {c.file for c in result.changes}
    title = f"LLM snapshot changes since {result.base}"
    if len(files) == 1:
        title += f" in {next(iter(files))}"
    out = Table(title=Text(title), caption=Text(f"model: {shared}") if shared else None)
    columns = ["snapshot", "verdict", "kind", "similarity", "reason"]
    if shared is None:
        columns.insert(1, "model")
    for column in columns:
        out.add_column(column, overflow="fold", no_wrap=column in ("snapshot", "similarity"))
    for c in result.changes:
        v = c.classification
        style = "red" if c.worrying else ("green" if v else "yellow")
        compared = c.status == "changed"
        verdict: str = c.status
        if v is not None:
            verdict = v.verdict if compared else f"{c.status}, {v.verdict}"
        # Text, not markup: a test id such as `test_x[/api/refund]` is no rich tag.
        row = {
            "snapshot": Text(c.name if len(files) == 1 else f"{c.file}::{c.name}"),
            "model": Text(_models(c)),
            "verdict": Text(verdict, style),
            "kind": Text(v.kind if v else ""),
            "similarity": Text(f"{v.similarity:.2f}" if v and compared else ""),
            "reason": Text(v.reason if v else f"snapshot {c.status}; nothing to compare"),
        }
        out.add_row(*(row[column] for column in columns))
    return out


def write_html(result: Review, path: Path) -> None:
    """A self-contained side-by-side report of every change."""
    rows = "\n".join(_html_row(c) for c in result.changes)
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>LLM snapshot review</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; width: 100%; }}
td, th {{ border: 1px solid #ccc; padding: .4rem; vertical-align: top; text-align: left; }}
pre {{ white-space: pre-wrap; margin: 0; font-size: .85rem; }}
.worrying {{ background: #fde8e8; }} .acceptable {{ background: #e8f7ea; }}
.added, .removed {{ background: #fff8e1; }}
</style></head><body>
<h1>LLM snapshot review</h1>
<p>{html.escape(summary(result))}</p>
<table><tr><th>snapshot</th><th>verdict</th><th>old</th><th>new</th></tr>
{rows}
</table></body></html>
"""
    path.write_text(page, encoding="utf-8")


def _html_row(c: Change) -> str:
    v = c.classification
    css = v.verdict if v else c.status
    verdict: str = c.status
    if v is not None:
        similarity = f"similarity {v.similarity:.2f}" if c.status == "changed" else c.status
        verdict = (
            f"<b>{v.verdict}</b>: {html.escape(v.kind)}<br>{similarity}<br>{html.escape(v.reason)}"
        )

    def cell(record: Record | None) -> str:
        if record is None:
            return "<td></td>"
        model = html.escape(record.model or "model not recorded")
        return f"<td><i>{model}</i><pre>{html.escape(record.text)}</pre></td>"

    name = html.escape(f"{c.file}::{c.name}")
    return f'<tr class="{css}"><td>{name}</td><td>{verdict}</td>{cell(c.old)}{cell(c.new)}</tr>'
