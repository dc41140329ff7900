"""`canarytrace lint`: find unpinned and dying model ids in code and config.

What counts as a model id: a whole string value that names a model of a known family
(`gpt-*`, `chatgpt-*`, `o1`..`o9*`, `claude-*`, `gemini-*`, optionally behind a provider
prefix such as `openai/` or `anthropic.`). Prose that merely mentions a model is not one.

Where it looks:

- Python, through the AST: string literals passed as `model=`, stored under a `"model"`
  dict key, or assigned to a name holding MODEL (`MODEL`, `DEFAULT_MODEL`, `cfg.model`) or
  inside a class whose name holds Model (the article's `ModelConfig.PRODUCTION`). Literals
  joined by `+` are one value; text that an f-string's `{...}` or a run-time operand
  continues is only the start of an id, and is not judged.
- YAML: every string value, with its line.
- JSON, TOML and `.env` files, and any file the parsers above reject: every quoted or
  bare value on each line, comments removed. (JSON has no comments and quotes every
  string, so this finds each one on its line, and is ten times faster than a YAML parser.)
  A rejected file is named in a `Notice`, as is one that is not UTF-8 (read with its
  undecodable bytes replaced: model ids are ASCII) and one that cannot be read at all.

What it reports: undated aliases (with the snapshot to pin), and models that are retired,
retire within 60 days, or are deprecated (with the provider's replacement). A line that
says `canarytrace: ignore` is skipped.

Anthropic's models as Amazon Bedrock spells them (`[us.]anthropic.claude-...-v2:0`) and
Google Vertex AI (`claude-...-v2@20241022`) are judged by Anthropic's own dates, and the
finding says so: the platforms retire models on dates of their own, often later.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from canarytrace.deprecations import DeprecationTable, Lifecycle
from canarytrace.registry import is_known_alias, is_pinned

IGNORE_MARK = "canarytrace: ignore"
SKIP_DIRS = frozenset(
    {".git", ".hg", ".venv", "venv", "node_modules", "__pycache__", ".tox", ".mypy_cache",
     ".ruff_cache", ".pytest_cache", "build", "dist", ".canarytrace"}
)  # fmt: skip
_MODEL_ID = re.compile(
    # Bedrock's cross-region ids put a geography before `anthropic.` (`us.`, `eu.`, ...).
    r"^(?:(?:openai|(?:[a-z]{2,6}\.)?anthropic|google|vertex_ai|gemini|bedrock|azure)[/:.])?"
    r"((?:gpt-|chatgpt-|claude-|gemini-)[\w.@:-]+|o[1-9](?:-[\w.-]+)?)$"
)
#: Bedrock's version suffix (`-v2:0`) and Vertex AI's `@date` (with a `-v2` before it).
_BEDROCK_ID = re.compile(r"^(claude-[\w.-]+?)-v\d+:\d+$")
_VERTEX_ID = re.compile(r"^(claude-[\w.-]+?)(?:-v\d+)?@(\d{8})$")
_QUOTED = re.compile(r""""((?:[^"\\]|\\.)*)"|'([^']*)'""")
_BARE_VALUE = re.compile(r"[:=]\s*([\w.@:/-]+)\s*$")


@dataclass(frozen=True)
class Finding:
    """One model id that should change: where, what, why, and what to pin instead."""

    file: str
    line: int
    model: str
    kind: str  # undated-alias | retired | retiring | deprecated
    why: str
    suggestion: str | None
    suggestion_pinned: bool = True  # False: the provider's pick has no dated id on record

    def __str__(self) -> str:
        text = f"{self.file}:{self.line}: {self.model}: {self.why}"
        if self.suggestion:
            text += f"; pin {self.suggestion} instead"
            if not self.suggestion_pinned:
                text += " (the provider's pick, which has no dated id yet: pin its snapshot)"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Notice:
    """A file lint read only in part, or not at all: said, so a pass is never silently partial."""

    file: str
    message: str
    unread: bool = False  # True: nothing in the file was checked, so the run cannot pass

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"


def _ignore(notice: Notice) -> None:
    """The default `notify`: a library caller that passes none has chosen not to hear."""


def model_id_in(value: str) -> str | None:
    """The model id that `value` is (provider prefix removed), or None if it is not one."""
    match = _MODEL_ID.match(value.strip())
    return match.group(1) if match else None


def anthropic_id(model_id: str) -> str | None:
    """Anthropic's own id for its model as Bedrock or Vertex AI spells it, else None."""
    if match := _BEDROCK_ID.match(model_id):
        return match.group(1)
    if match := _VERTEX_ID.match(model_id):
        return f"{match.group(1)}-{match.group(2)}"
    return None


def check(
    model_id: str, as_of: dt.date, table: DeprecationTable
) -> tuple[str, str, str | None] | None:
    """(kind, why, suggestion) for a model id that should change, or None when it is fine."""
    if not is_pinned(model_id, table):
        why = (
            "undated alias: it moves to a new model whenever the provider updates it"
            if is_known_alias(model_id, table)
            else "no snapshot date or version: not pinned to one model"
        )
        suggestion = table.suggest(model_id, as_of)
        target = table.aliases.get(model_id)
        if suggestion is None and target:
            why += f"; it pointed at {target}, {table.assess(target, as_of).describe()}"
        return "undated-alias", why, suggestion
    state = table.assess(model_id, as_of)
    if state.lifecycle in (Lifecycle.RETIRED, Lifecycle.RETIRING, Lifecycle.DEPRECATED):
        replacement = table.suggest(model_id, as_of) or (state.entry and state.entry.replacement)
        return state.lifecycle.value, state.describe(), replacement or None
    return None


def lint_paths(
    paths: Iterable[str | Path],
    *,
    as_of: dt.date,
    table: DeprecationTable,
    notify: Callable[[Notice], None] = _ignore,
) -> list[Finding]:
    """Every finding in `paths` (files, or folders searched recursively), by file, line and
    column. Each file read only in part or not at all goes to `notify`, so that a caller can
    tell a clean pass from one that could not look."""
    findings: list[Finding] = []
    for file in sorted(_files(paths)):
        text = _read(file, notify)
        if text is not None:
            findings.extend(_lint_file(file, text, as_of, table, notify))
    return findings


def _read(file: Path, notify: Callable[[Notice], None]) -> str | None:
    """The file's text, or None when it cannot be read. Bytes that are not UTF-8 become
    U+FFFD: every model id is ASCII, so it is still found in a Latin-1 or cp1252 file."""
    try:
        data = file.read_bytes()
    except OSError as exc:
        notify(Notice(str(file), f"not read ({exc.strerror or exc}): not checked", unread=True))
        return None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 (byte {exc.start}): read with the undecodable bytes replaced"
        notify(Notice(str(file), message))
        return data.decode("utf-8-sig", errors="replace")


def _lint_file(
    file: Path, text: str, as_of: dt.date, table: DeprecationTable, notify: Callable[[Notice], None]
) -> Iterator[Finding]:
    """The findings in one file's text: each model id once a line, unless the line says ignore."""
    lines = text.splitlines()
    seen: set[tuple[int, str]] = set()
    for line, _column, value in _candidates(file, text, notify):
        model_id = model_id_in(value)
        if model_id is None or (line, model_id) in seen:
            continue
        seen.add((line, model_id))
        if 0 < line <= len(lines) and IGNORE_MARK in lines[line - 1]:
            continue
        upstream = anthropic_id(model_id)
        verdict = check(upstream or model_id, as_of, table)
        if verdict:
            kind, why, suggestion = verdict
            if upstream is not None:
                why = (
                    f"Anthropic's {upstream}, {why}; the cloud platform sets its own "
                    "dates, and spells the replacement its own way"
                )
            pinned = suggestion is None or is_pinned(suggestion, table)
            yield Finding(str(file), line, model_id, kind, why, suggestion, pinned)


def _kind(path: Path) -> str | None:
    name = path.name
    if name == ".env" or name.startswith(".env.") or path.suffix == ".env":
        return "env"
    return {
        ".py": "python", ".pyi": "python", ".yaml": "yaml", ".yml": "yaml", ".json": "lines",
        ".toml": "lines",
    }.get(path.suffix.lower())  # fmt: skip


def _files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for child in sorted(path.rglob("*")):
                rel = child.relative_to(path).parts
                if child.is_file() and not SKIP_DIRS.intersection(rel[:-1]) and _kind(child):
                    yield child
        elif path.is_file() and _kind(path):
            yield path


def _candidates(
    path: Path, text: str, notify: Callable[[Notice], None]
) -> list[tuple[int, int, str]]:
    """(line, column, value) of each value that may be a model id, in the order of the text.
    A file its parser rejects is read line by line, and said to be."""
    parse = {"python": _parse_python, "yaml": _parse_yaml}.get(_kind(path) or "")
    if parse is not None:
        # Any error: ruamel raises ValueError (2024-02-30), IndexError (`!!int 0x`) and
        # RecursionError (deep nesting) on odd input, and one odd file must not end the run.
        try:
            return sorted(parse(text))
        except Exception as exc:
            notify(Notice(str(path), f"not parsed ({_reason(exc)}): read line by line"))
    return sorted(_lines(text))


def _parse_python(text: str) -> list[tuple[int, int, str]]:
    return list(_python(ast.parse(text)))


def _parse_yaml(text: str) -> list[tuple[int, int, str]]:
    return [found for doc in YAML(typ="rt").load_all(text) for found in _yaml(doc)]


def _reason(exc: Exception) -> str:
    """Why a parser gave up, on one line with the line number when the parser knows it."""
    if isinstance(exc, MarkedYAMLError) and exc.problem_mark is not None:
        return f"line {exc.problem_mark.line + 1}: {exc.problem}"
    if isinstance(exc, SyntaxError) and exc.lineno:
        return f"line {exc.lineno}: {exc.msg}"
    if isinstance(exc, RecursionError | MemoryError):
        return "nested too deeply"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


# --- Python -------------------------------------------------------------------------------


def _python(tree: ast.AST) -> Iterator[tuple[int, int, str]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            for keyword in node.keywords:
                if keyword.arg == "model":
                    yield from _strings(keyword.value)
        elif isinstance(node, ast.Dict):
            for key, value in zip(node.keys, node.values, strict=True):
                if isinstance(key, ast.Constant) and key.value == "model":
                    yield from _strings(value)
        elif isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any("MODEL" in _name(t).upper() for t in targets):
                yield from _strings(node.value)
        elif isinstance(node, ast.ClassDef) and "model" in node.name.lower():
            for stmt in node.body:
                if isinstance(stmt, ast.Assign | ast.AnnAssign) and stmt.value is not None:
                    yield from _strings(stmt.value)


def _name(target: ast.expr) -> str:
    if isinstance(target, ast.Name):
        return target.id
    if isinstance(target, ast.Attribute):
        return target.attr
    if isinstance(target, ast.Tuple | ast.List):
        return " ".join(_name(t) for t in target.elts)
    return ""


def _strings(expr: ast.expr) -> Iterator[tuple[int, int, str]]:
    """Each string value in `expr`: a literal, or literals joined by `+` or in an f-string."""
    parts: set[ast.AST] = set()  # the pieces of a value already taken: not values themselves
    for node in ast.walk(expr):
        if isinstance(node, ast.expr) and node not in parts:
            value = _literal_end(_pieces(node, parts))
            if value:
                yield node.lineno, node.col_offset, value


def _pieces(node: ast.expr, parts: set[ast.AST]) -> list[str | None]:
    """`node`'s text as its literal pieces, with None for each piece known only at run time."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        parts.add(node)
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        parts.add(node)
        return [piece for value in node.values for piece in _pieces(value, parts)]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        parts.add(node)
        return _pieces(node.left, parts) + _pieces(node.right, parts)
    return [None]


def _literal_end(pieces: list[str | None]) -> str:
    """The literal text after the last run-time piece: text before one is only a fragment
    (`f"gpt-4o-{date}"` is no alias `gpt-4o-`), so it is not judged."""
    tail: list[str] = []
    for piece in reversed(pieces):
        if piece is None:
            break
        tail.append(piece)
    return "".join(reversed(tail))


# --- YAML / JSON --------------------------------------------------------------------------


def _yaml(node: Any) -> Iterator[tuple[int, int, str]]:
    if isinstance(node, CommentedMap):
        for key, value in node.items():
            if isinstance(value, str):
                line, column = node.lc.value(key)
                yield line + 1, column, value
            else:
                yield from _yaml(value)
    elif isinstance(node, CommentedSeq):
        for index, value in enumerate(node):
            if isinstance(value, str):
                line, column = node.lc.item(index)
                yield line + 1, column, value
            else:
                yield from _yaml(value)


# --- TOML, .env and anything unparsable: line by line -------------------------------------


def _lines(text: str) -> Iterator[tuple[int, int, str]]:
    for number, raw in enumerate(text.splitlines(), start=1):
        line = _without_comment(raw)
        for match in _QUOTED.finditer(line):
            value = match.group(1) if match.group(1) is not None else match.group(2)
            yield number, match.start(), value
        bare = _BARE_VALUE.search(line)
        if bare:
            yield number, bare.start(1), bare.group(1)


def _without_comment(line: str) -> str:
    """`line` up to a `#` that starts a comment (outside quotes, at start or after a space)."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            if char == quote:
                quote = None
        elif char in "\"'":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line
