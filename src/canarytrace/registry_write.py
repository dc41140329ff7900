"""Edits to `models.yaml` that keep the file as people wrote it: promote and roll back.

The edit goes through ruamel.yaml's round-trip mode, which keeps comments, key order and
quoting; the indentation is chosen as the one that reproduces the untouched file exactly,
so the diff a reviewer sees is only the edited values. JSON registries (which have no
comments) are rewritten with their own indentation.

The file is validated before and after the edit and replaced atomically, so a router that
re-reads it never sees half a file. Environment overrides are ignored here: these commands
change the file, which is what every process shares.

Edits of one file queue on a lock (an `flock` of its directory) held from the read to the
replace, so a rollback is never lost to a promotion written at the same moment,
and the second edit judges the first one's result. A symlinked registry is edited where the
link points; the new file keeps the old one's permission bits, its UTF-8 byte-order mark and
its CRLF line endings. Windows has no `flock`: there, edits are not queued.

A promotion moves the canary one stage up. Promoting past the last stage completes the
upgrade: the canary becomes production, the old production becomes the fallback (the
article's "older stable version"), the canary tier is removed, the stage returns to 0 and
the day is recorded in `upgraded_on`. A route that is rolled back is not promoted.
"""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap
from ruamel.yaml.error import CommentMark
from ruamel.yaml.tokens import CommentToken

from canarytrace.deprecations import DeprecationTable, load_table
from canarytrace.errors import RegistryError, RoutingError
from canarytrace.registry import Registry, Route, parse_registry

if sys.platform != "win32":
    import fcntl


@dataclass(frozen=True)
class Change:
    """What one write did to one route."""

    route: str
    before: Route
    after: Route
    summary: str
    completed: bool = False  # True when a promotion made the canary production


def promote(
    path: str | Path,
    route: str,
    *,
    today: dt.date | None = None,
    table: DeprecationTable | None = None,
    from_stage: int | None = None,
) -> Change:
    """Move `route`'s canary one stage up, or complete the upgrade after the last stage.

    Refused (RoutingError) while the route is rolled back, when it has no canary, when
    the canary is retired on `today` according to the deprecation table, and when it is
    no longer at `from_stage` (the stage a verdict was checked for: two promotions run at
    once would otherwise both pass that check and take two steps on one verdict).
    """
    today = today or dt.date.today()
    path = Path(path)
    with _locked(path):
        before = _route(path, route)
        if from_stage is not None and before.stage != from_stage:
            raise RoutingError(
                f"{path}: route '{route}' is at {before.stage}%, not the {from_stage}% its "
                "verdict was checked for (promoted meanwhile); analyze it at this stage"
            )
        if before.rollback:
            raise RoutingError(
                f"{path}: route '{route}' is rolled back "
                f"({before.rollback_reason or 'no reason'}); fix the cause, then "
                f"`canarytrace rollback {route} --clear` before promoting"
            )
        if before.canary is None:
            raise RoutingError(f"{path}: route '{route}' has no canary to promote; set its canary")
        state = (table or load_table()).assess(before.canary, today)
        if state.refused:
            raise RoutingError(
                f"{path}: route '{route}': canary {before.canary} {state.describe()}; "
                "promote a model that still works"
            )
        stages = before.stages
        if before.stage < stages[-1]:
            stage = next(s for s in stages if s > before.stage)

            def edit(doc: Any) -> None:
                _set(doc["routes"][route], "stage", stage, after=("stages", "fallback", "canary"))

            after = _write(path, route, edit)
            return Change(
                route, before, after, f"canary {before.canary}: {before.stage}% -> {stage}%"
            )

        def complete(doc: Any) -> None:
            node = doc["routes"][route]
            node["production"] = before.canary
            _set(node, "fallback", before.production, after=("canary", "production"))
            _delete(node, "canary")
            node["stage"] = 0
            _set(node, "upgraded_on", _date(doc, today), after=("stage", "stages"))

        after = _write(path, route, complete)
        summary = (
            f"upgrade complete: production {before.production} -> {before.canary}, "
            f"fallback {before.fallback or '(none)'} -> {before.production}"
        )
        return Change(route, before, after, summary, completed=True)


def rollback(path: str | Path, route: str, reason: str, *, today: dt.date | None = None) -> Change:
    """Set `route`'s rollback flag with its reason and date; every process follows it.

    During a canary, rolled-back traffic goes to production; after a completed upgrade it
    goes to the fallback. Refused when the reason is empty or there is nowhere to go; a
    route already rolled back is left as it is, with its first reason and date.
    """
    today = today or dt.date.today()
    path = Path(path)
    if not reason.strip():
        raise RoutingError("a rollback needs a reason (--reason): say what went wrong")
    with _locked(path):
        before = _route(path, route)
        if before.canary is None and before.fallback is None:
            raise RoutingError(
                f"{path}: route '{route}' has neither a canary nor a fallback; nothing to roll back"
            )
        if before.rollback:  # done already: the first reason and date are the incident's
            since = before.rolled_back_on or "an unrecorded day"
            first = before.rollback_reason or "no reason recorded"
            return Change(route, before, before, f"already rolled back since {since} ({first})")

        def edit(doc: Any) -> None:
            node = doc["routes"][route]
            _set(node, "rollback", True, after=("stage", "stages", "fallback", "canary"))
            _set(node, "rollback_reason", reason.strip(), after=("rollback",))
            _set(node, "rolled_back_on", _date(doc, today), after=("rollback_reason",))

        after = _write(path, route, edit)
        target = before.production if before.canary else before.fallback
        return Change(route, before, after, f"rolled back to {target}: {reason.strip()}")


def clear_rollback(path: str | Path, route: str) -> Change:
    """Clear `route`'s rollback flag (and its reason and date) once the cause is fixed."""
    path = Path(path)
    with _locked(path):
        before = _route(path, route)
        if not before.rollback:
            raise RoutingError(f"{path}: route '{route}' is not rolled back")

        def edit(doc: Any) -> None:
            node = doc["routes"][route]
            node["rollback"] = False
            for key in ("rolled_back_on", "rollback_reason"):
                _delete(node, key)

        after = _write(path, route, edit)
        return Change(route, before, after, "rollback cleared")


# --- one edit at a time, written safely ---------------------------------------------------


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock from read to replace so concurrent edits queue, none is lost.

    The lock is on the real file's directory, not the registry, whose inode changes on
    replace, nor a lock file, which would be left in the user's repository (deleting it
    would reopen the race). Two links to one registry lock the same directory.
    """
    folder = Path(os.path.realpath(path)).parent
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        raise _unwritable(path, exc) from exc
    try:
        if sys.platform != "win32":
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _replace(path: Path, real: Path, data: bytes) -> Registry:
    """Swap `data` in for `real` (`path` resolved); on failure a RegistryError, `real` as it was."""
    try:
        return _swap_in(real, data)
    except RegistryError as exc:
        raise RegistryError(f"{path}: the edit would make the registry invalid: {exc}") from exc
    except OSError as exc:
        raise _unwritable(path, exc) from exc


def _swap_in(real: Path, data: bytes) -> Registry:
    """Write a unique temp file beside `real`, check it, then rename it over `real`.

    A unique name keeps concurrent writers (even without the lock) off each other's file;
    the same directory keeps the rename atomic; fsync keeps a crash from leaving it empty.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".canarytrace-tmp", dir=real.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        shutil.copymode(real, tmp)  # mkstemp made it 0600
        registry = parse_registry(tmp, environ={})
        os.replace(tmp, real)
    except BaseException:
        with suppress(OSError):
            os.unlink(tmp)
        raise
    return registry


def _unwritable(path: Path, exc: OSError) -> RegistryError:
    """A write that failed, said plainly: the file, why, that it is unchanged, what to do."""
    folder = Path(os.path.realpath(path)).parent
    return RegistryError(
        f"{path}: cannot write the registry ({exc.strerror or exc}); it is unchanged. "
        f"The edit writes a new file in {folder} and renames it over the old one: make that "
        "directory writable and check the disk has room, then run the command again"
    )


@dataclass(frozen=True)
class _Layout:
    """The bytes the text does not show, kept as they were: a UTF-8 BOM and CRLF line ends."""

    bom: bool
    crlf: bool

    @classmethod
    def of(cls, raw: bytes) -> _Layout:
        end = raw.find(b"\n")
        return cls(raw.startswith(codecs.BOM_UTF8), end > 0 and raw[end - 1 : end] == b"\r")

    def decode(self, raw: bytes) -> str:
        return raw.decode("utf-8-sig").replace("\r\n", "\n")

    def encode(self, text: str) -> bytes:
        text = text.replace("\n", "\r\n") if self.crlf else text
        return (codecs.BOM_UTF8 if self.bom else b"") + text.encode("utf-8")


# --- the document -------------------------------------------------------------------------


def _route(path: Path, route: str) -> Route:
    registry = parse_registry(path, environ={})
    if route not in registry.routes:
        raise RoutingError(
            f"{path}: no route '{route}'; the registry has {sorted(registry.routes) or 'none'}"
        )
    return registry.routes[route]


def _is_json(path: Path, text: str) -> bool:
    """A .json file, or strict JSON under another name; YAML in flow style also opens with '{'."""
    if path.suffix.lower() == ".json":
        return True
    if not text.lstrip().startswith("{"):
        return False
    try:
        json.loads(text)
    except json.JSONDecodeError:
        return False
    return True


def _json_doc(path: Path, text: str) -> Any:
    """The JSON document; a .json file that is YAML but not JSON would be rewritten wrongly."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RegistryError(
            f"{path}:{exc.lineno}: not strict JSON ({exc.msg}), so it cannot be rewritten as "
            "JSON; make it strict JSON, or rename it to .yaml if it is YAML"
        ) from exc


def _date(doc: Any, day: dt.date) -> dt.date | str:
    """YAML keeps a real date; JSON has none, so it gets the ISO string."""
    return day if isinstance(doc, CommentedMap) else day.isoformat()


def _write(path: Path, route: str, edit: Callable[[Any], None]) -> Route:
    """Apply `edit` to the file `path` names (through a symlink) and replace it; call locked."""
    real = Path(os.path.realpath(path))
    raw = real.read_bytes()
    layout = _Layout.of(raw)
    registry = _replace(path, real, layout.encode(_edited(path, layout.decode(raw), edit)))
    return registry.routes[route]


def _edited(path: Path, text: str, edit: Callable[[Any], None]) -> str:
    """The text after `edit`, in the file's own format and indentation (LF line ends)."""
    if _is_json(path, text):
        doc = _json_doc(path, text)
        edit(doc)
        indent = next((len(ln) - len(ln.lstrip()) for ln in text.splitlines()[1:2]), 2) or None
        return json.dumps(doc, indent=indent, ensure_ascii=False) + (
            "\n" if text.endswith("\n") else ""
        )
    yaml = _yaml_like(text)
    doc = yaml.load(text)
    edit(doc)
    out = io.StringIO()
    yaml.dump(doc, out)
    return out.getvalue()


def _yaml_like(text: str) -> YAML:
    """A round-trip YAML whose indentation reproduces `text` (first exact match wins)."""
    best: YAML | None = None
    for mapping in (2, 4):
        for offset in (2, 0, 4):
            yaml = YAML(typ="rt")
            yaml.preserve_quotes = True
            yaml.width = 4096
            yaml.indent(mapping=mapping, sequence=offset + 2, offset=offset)
            out = io.StringIO()
            yaml.dump(yaml.load(text), out)
            if out.getvalue() == text:
                return yaml
            best = best or yaml
    assert best is not None
    return best


# --- comment-preserving key edits ---------------------------------------------------------
# ruamel keeps the full-line comments that follow a value on that value's key (slot 2 of
# `ca.items[key]`). Those lines introduce whatever comes next, so when a key is added after
# the last one, or removed, they must move with the boundary rather than stay or vanish.


def _set(node: Any, key: str, value: Any, *, after: Sequence[str]) -> None:
    """Set `key`; a new key goes right after the first of `after` present (else at the end)."""
    if key in node:
        node[key] = value
        return
    if not isinstance(node, CommentedMap):
        node[key] = value
        return
    keys = list(node)
    anchor = next((k for k in after if k in node), keys[-1])
    node.insert(keys.index(anchor) + 1, key, value)
    if anchor == keys[-1]:
        _attach_following(node, key, _detach_following(node, anchor))


def _delete(node: Any, key: str) -> None:
    if key not in node:
        return
    if not isinstance(node, CommentedMap):
        del node[key]
        return
    keys = list(node)
    following = _detach_following(node, key)
    node.ca.items.pop(key, None)
    del node[key]
    index = keys.index(key)
    if following and index > 0:
        _attach_following(node, keys[index - 1], following)


def _detach_following(node: CommentedMap, key: str) -> str | None:
    """Remove and return the full-line comments after `key`'s value (its own eol comment stays)."""
    slots = node.ca.items.get(key)
    token = slots[2] if slots and len(slots) > 2 else None
    if token is None:
        return None
    head, _, tail = str(token.value).partition("\n")
    if not tail:
        return None
    if head.strip():
        token.value = head + "\n"
    else:
        slots[2] = None
    return tail


def _attach_following(node: CommentedMap, key: str, following: str | None) -> None:
    if not following:
        return
    slots = node.ca.items.setdefault(key, [None, None, None, None])
    token = slots[2]
    if token is None:
        slots[2] = CommentToken("\n" + following, CommentMark(0), None)
    else:
        token.value = token.value + following
