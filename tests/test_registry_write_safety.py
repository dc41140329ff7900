"""promote and rollback at the same moment, through a symlink, on a failing disk, in CRLF.

The race runs real processes: threads would share one interpreter and hide what two
`canarytrace` commands started together do to one file.
"""

from __future__ import annotations

import codecs
import datetime as dt
import errno
import multiprocessing as mp
import os
import re
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Barrier
from pathlib import Path
from threading import BrokenBarrierError

import pytest

from canarytrace import registry_write
from canarytrace.errors import RegistryError, RoutingError
from canarytrace.registry import Route, parse_registry
from canarytrace.registry_write import promote, rollback

FIXTURES = Path(__file__).parent / "fixtures" / "registry"
DAY = dt.date(2026, 11, 25)
PROMOTERS = 3  # chat's stages are 5, 25, 50, 100: three promotions and none completes

Outcome = tuple[str, str, int | None]  # what a racer did, "ok" or its error, the new stage


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "models.yaml"
    shutil.copy(FIXTURES / "commented.yaml", path)
    return path


# --- the race ------------------------------------------------------------------------------


def _hold_after_reading(all_read: Barrier) -> None:
    """Make each edit wait after its read until every racer has read (or none else can).

    Without a lock all racers read the same file and then all write: the lost update
    happens every time. With the lock the others are queued, so the wait times out and
    the edit goes on; the outcome never depends on that timeout.
    """
    read = registry_write._route

    def read_then_hold(path: Path, route: str) -> Route:
        before = read(path, route)
        with suppress(BrokenBarrierError):
            all_read.wait(timeout=0.5)
        return before

    registry_write._route = read_then_hold


def _race(path: str, kind: str, start: Barrier, all_read: Barrier, out: Queue[Outcome]) -> None:
    """One racing process: promote or roll back as soon as every racer is ready."""
    _hold_after_reading(all_read)
    start.wait()
    try:
        if kind == "promote":
            change = promote(path, "chat", today=DAY)
        else:
            change = rollback(path, "chat", "error burst", today=DAY)
        out.put((kind, "ok", change.after.stage))
    except Exception as exc:  # reported to the test, which says what went wrong
        out.put((kind, f"{type(exc).__name__}: {exc}", None))


def _run_race(path: Path) -> list[Outcome]:
    kinds = ["rollback"] + ["promote"] * PROMOTERS
    ctx = mp.get_context("spawn")
    start, all_read, out = ctx.Barrier(len(kinds)), ctx.Barrier(len(kinds)), ctx.Queue()
    racers = [ctx.Process(target=_race, args=(str(path), k, start, all_read, out)) for k in kinds]
    for racer in racers:
        racer.start()
    results = [out.get() for _ in racers]
    for racer in racers:
        racer.join()
    return results


def _serially(tmp_path: Path, promotions: int) -> str:
    """The file after `promotions` promotions and then the rollback, one after the other."""
    path = tmp_path / "serial" / "models.yaml"
    path.parent.mkdir()
    shutil.copy(FIXTURES / "commented.yaml", path)
    for _ in range(promotions):
        promote(path, "chat", today=DAY)
    rollback(path, "chat", "error burst", today=DAY)
    return path.read_text()


@pytest.mark.skipif(sys.platform == "win32", reason="no flock: edits are not queued there")
def test_concurrent_edits_queue_and_every_success_is_in_the_file(
    registry: Path, tmp_path: Path
) -> None:
    results = _run_race(registry)

    refused = f"RoutingError: {registry}: route 'chat' is rolled back (error burst)"
    assert all(outcome == "ok" or outcome.startswith(refused) for _, outcome, _ in results), results
    assert ("rollback", "ok") in [(kind, outcome) for kind, outcome, _ in results]
    # Each promotion built on the one before it, and all of them came before the rollback.
    promoted = sorted(stage for kind, _, stage in results if kind == "promote" and stage)
    assert promoted == [25, 50, 100][: len(promoted)]
    assert registry.read_text() == _serially(tmp_path, len(promoted))
    assert not [p.name for p in tmp_path.iterdir() if "canarytrace-tmp" in p.name]


# --- where and how the file is written -------------------------------------------------------


def test_a_symlinked_registry_is_edited_where_it_points(tmp_path: Path) -> None:
    real = tmp_path / "config" / "models.yaml"
    real.parent.mkdir()
    shutil.copy(FIXTURES / "commented.yaml", real)
    link = tmp_path / "models.yaml"
    link.symlink_to(real)

    rollback(link, "chat", "error burst", today=DAY)

    assert link.is_symlink() and link.resolve() == real
    assert parse_registry(real, environ={}).routes["chat"].rollback


def test_the_new_file_keeps_the_old_ones_permission_bits(registry: Path) -> None:
    registry.chmod(0o640)
    promote(registry, "chat", today=DAY)
    assert stat.S_IMODE(registry.stat().st_mode) == 0o640


def test_an_edit_leaves_no_file_beside_the_registry(registry: Path) -> None:
    """Not even a lock file: it would show in the user's `git status`."""
    before = sorted(p.name for p in registry.parent.iterdir())
    promote(registry, "chat", today=DAY)
    rollback(registry, "chat", "error burst", today=DAY)
    assert sorted(p.name for p in registry.parent.iterdir()) == before


FAILURES = {
    "directory cannot be opened to lock": (os, "open", errno.EACCES),
    "directory refuses the new file": (tempfile, "mkstemp", errno.EACCES),
    "disk full": (os, "fsync", errno.ENOSPC),
    "rename refused": (os, "replace", errno.EPERM),
}


@pytest.mark.parametrize("failure", FAILURES, ids=list(FAILURES))
def test_a_failed_write_says_what_to_do_and_leaves_the_file_alone(
    registry: Path, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    module, name, code = FAILURES[failure]
    before = registry.read_bytes()

    with monkeypatch.context() as patch:
        patch.setattr(module, name, _raising(code))
        with pytest.raises(RegistryError, match="make that directory writable") as caught:
            promote(registry, "chat", today=DAY)

    assert str(registry) in str(caught.value) and os.strerror(code) in str(caught.value)
    assert registry.read_bytes() == before
    assert not [p.name for p in registry.parent.iterdir() if "canarytrace-tmp" in p.name]


def _raising(code: int) -> Callable[..., None]:
    def fail(*args: object, **kwargs: object) -> None:
        raise OSError(code, os.strerror(code))

    return fail


# --- bytes the text does not show ----------------------------------------------------------


@pytest.mark.parametrize(("bom", "crlf"), [(True, False), (False, True), (True, True)])
def test_a_byte_order_mark_and_crlf_line_ends_survive_an_edit(
    registry: Path, tmp_path: Path, bom: bool, crlf: bool
) -> None:
    plain = tmp_path / "plain.yaml"
    shutil.copy(registry, plain)
    registry.write_bytes(_dressed(registry.read_bytes(), bom, crlf))

    for path in (plain, registry):
        promote(path, "chat", today=DAY)
        rollback(path, "summarize", "error burst", today=DAY)

    assert registry.read_bytes() == _dressed(plain.read_bytes(), bom, crlf)


def _dressed(lf: bytes, bom: bool, crlf: bool) -> bytes:
    body = lf.replace(b"\n", b"\r\n") if crlf else lf
    return (codecs.BOM_UTF8 if bom else b"") + body


# --- flow style ----------------------------------------------------------------------------

FLOW = (
    "{routes: {chat: {production: gpt-4o-2024-08-06, canary: gpt-4o-2024-11-20, stage: 5}},\n"
    " models: [{id: gpt-4o-2024-11-20, provider: openai},"
    " {id: gpt-4o-2024-08-06, provider: openai}]}\n"
)


def test_a_flow_style_yaml_registry_is_edited_as_yaml(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text(FLOW)

    assert promote(path, "chat", today=DAY).after.stage == 25
    rollback(path, "chat", "error burst", today=DAY)

    chat = parse_registry(path, environ={}).routes["chat"]
    assert (chat.stage, chat.rollback, chat.rolled_back_on) == (25, True, DAY)
    with pytest.raises(RoutingError, match="is rolled back"):
        promote(path, "chat", today=DAY)


def test_a_json_named_registry_that_is_not_json_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    path.write_text(FLOW)

    with pytest.raises(RegistryError, match=re.escape(f"{path}:1: not strict JSON")):
        promote(path, "chat", today=DAY)
    assert path.read_text() == FLOW


def test_a_promotion_checked_for_one_stage_is_refused_once_the_route_moved_on(
    registry: Path,
) -> None:
    """`promote --require-verdict` checks the verdict, then promotes: two run at once both
    passed the check and took two steps on one verdict."""
    promote(registry, "chat", today=DAY, from_stage=5)
    with pytest.raises(RoutingError, match=r"is at 25%, not the 5% its verdict was checked for"):
        promote(registry, "chat", today=DAY, from_stage=5)
    assert parse_registry(registry, environ={}).routes["chat"].stage == 25
