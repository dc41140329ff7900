"""Sticky canary routing: stable cohorts, shares, monotone stages, rollback, threads."""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import canarytrace
from canarytrace import routing
from canarytrace.errors import RegistryError, RoutingError
from canarytrace.registry import load_registry

PRODUCTION = "acme-chat-20260101"
CANARY = "acme-chat-20260601"
FALLBACK = "acme-chat-20250901"
STAGES = (5, 25, 50, 100)


def registry_yaml(
    stage: int = 5,
    *,
    production: str = PRODUCTION,
    canary: str | None = CANARY,
    fallback: str | None = FALLBACK,
    rollback: bool = False,
) -> str:
    """A small valid registry with one route `chat` (fictional pinned ids, never retired)."""
    lines = ["routes:", "  chat:", f"    production: {production}"]
    lines += [f"    canary: {canary}"] if canary else []
    lines += [f"    fallback: {fallback}"] if fallback else []
    lines += ["    stages: [5, 25, 50, 100]", f"    stage: {stage if canary else 0}"]
    lines += ["    rollback: true", "    rollback_reason: wrong answers"] if rollback else []
    lines.append("models:")
    for model_id in (m for m in (production, canary, fallback) if m):
        lines += [f"  - id: {model_id}", "    provider: other", "    pinned_date: 2026-01-01"]
    return "\n".join(lines) + "\n"


def write_registry(path: Path, text: str) -> Path:
    """Save the way editors do: a temporary file renamed over the old one."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


@pytest.fixture(autouse=True)
def clean_routing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(routing.HASH_KEY_ENV, raising=False)
    monkeypatch.delenv(routing.REGISTRY_ENV, raising=False)
    routing.reset()
    yield
    routing.reset()


@pytest.fixture
def registry_at(tmp_path: Path) -> Callable[..., Path]:
    """Configure routing from a registry file written with `registry_yaml(...)`."""

    def make(stage: int = 5, **kwargs: object) -> Path:
        path = write_registry(tmp_path / "models.yaml", registry_yaml(stage, **kwargs))
        routing.configure(path)
        return path

    return make


def canary_users(n: int) -> set[int]:
    return {i for i in range(n) if canarytrace.model("chat", f"user-{i}") == CANARY}


ASSIGN = """
import json, sys
from canarytrace import routing
routing.configure(sys.argv[1])
decisions = (routing.choose("chat", f"user-{i}") for i in range(10_000))
print(json.dumps([[d.bucket, d.model] for d in decisions]))
"""


def test_two_processes_assign_ten_thousand_users_identically(registry_at) -> None:
    path = registry_at(25)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CANARYTRACE_")}
    runs = [
        subprocess.run(
            [sys.executable, "-c", ASSIGN, str(path)],
            env={**env, "PYTHONHASHSEED": seed},  # built-in hash() differs; routing must not
            capture_output=True,
            text=True,
            check=True,
        )
        for seed in ("1", "2")
    ]
    first, second = (json.loads(run.stdout) for run in runs)
    here = [
        [d.bucket, d.model]
        for d in (canarytrace.choose("chat", f"user-{i}") for i in range(10_000))
    ]
    assert first == second == here
    assert {model for _, model in here} == {PRODUCTION, CANARY}


def test_bucket_and_user_hash_follow_the_documented_keyed_blake2b(registry_at) -> None:
    registry_at(50)
    for user in ("alice", "bob", "user-42", "ünïcode"):
        digest = hashlib.blake2b(
            b"bucket\0chat\0" + user.encode(), key=routing.DEFAULT_HASH_KEY, digest_size=8
        ).digest()
        bucket = int.from_bytes(digest, "big") % 10_000
        decision = canarytrace.choose("chat", user)
        assert decision.bucket == bucket
        assert decision.model == (CANARY if bucket < 5_000 else PRODUCTION)
        keyed = hashlib.blake2b(
            b"user\0" + user.encode(), key=routing.DEFAULT_HASH_KEY, digest_size=8
        )
        assert decision.user_hash == keyed.hexdigest()


@pytest.mark.parametrize("stage", STAGES)
def test_canary_share_is_within_one_point_of_the_stage(registry_at, stage: int) -> None:
    registry_at(stage)
    share = len(canary_users(100_000)) / 100_000
    assert abs(share - stage / 100) <= 0.01


def test_raising_the_stage_only_adds_users_to_the_canary(registry_at) -> None:
    cohorts = []
    for stage in STAGES:
        registry_at(stage)
        cohorts.append(canary_users(100_000))
    for smaller, larger in itertools.pairwise(cohorts):
        assert smaller < larger
    assert cohorts[-1] == set(range(100_000))


def test_without_a_user_id_every_stage_goes_to_production(registry_at) -> None:
    for stage in STAGES:
        registry_at(stage)
        assert canarytrace.model("chat") == PRODUCTION
        decision = canarytrace.choose("chat")
        assert (decision.tier, decision.bucket, decision.user_hash) == ("production", None, None)
        assert decision.rollout_percent == stage


def test_choose_reports_the_whole_decision(registry_at) -> None:
    registry_at(25)
    decisions = [canarytrace.choose("chat", f"user-{i}") for i in range(200)]
    for i, d in enumerate(decisions):
        assert d.route == "chat" and d.rollout_percent == 25
        assert d.model == canarytrace.model("chat", f"user-{i}")
        assert d.tier == ("canary" if d.model == CANARY else "production")
        assert (d.tier == "canary") == (d.bucket < 2_500)
        assert d.user_hash == routing.user_hash(f"user-{i}")
    assert canarytrace.choose("chat", 42) == canarytrace.choose("chat", "42")


def test_user_hash_is_keyed_sixteen_hex_digits_and_hides_the_id(
    registry_at, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry_at()
    default = routing.user_hash("alice@example.com")
    assert len(default) == 16 and int(default, 16) >= 0
    assert default == routing.user_hash("alice@example.com") != routing.user_hash("bob")
    assert "alice" not in default
    monkeypatch.setenv(routing.HASH_KEY_ENV, "team-secret")
    routing.reset()
    from_env = routing.user_hash("alice@example.com")
    routing.configure(hash_key="another-secret")
    assert len({default, from_env, routing.user_hash("alice@example.com")}) == 3


def test_another_hash_key_draws_another_cohort(registry_at) -> None:
    path = registry_at(25)
    default = canary_users(2_000)
    routing.configure(path, hash_key=b"x" * 100)  # longer than BLAKE2b's 64-byte key limit
    keyed = canary_users(2_000)
    assert default != keyed
    assert abs(len(keyed) - 500) < 100


def test_the_decision_is_recorded_for_the_next_call_of_that_model(registry_at) -> None:
    registry_at(100)
    decision = canarytrace.choose("chat", "alice")
    assert routing.take_decision("some-other-model") is None  # a different call leaves it
    assert routing.take_decision(decision.model) == decision
    assert routing.take_decision(decision.model) is None  # it labels exactly one call
    model_id = canarytrace.model("chat", "bob")
    assert routing.take_decision(model_id) == canarytrace.choose("chat", "bob")


def test_decisions_stay_in_their_own_thread_and_task(registry_at) -> None:
    registry_at(100)
    canarytrace.model("chat", "main-user")
    seen: list[object] = []
    worker = threading.Thread(target=lambda: seen.append(routing.take_decision(CANARY)))
    worker.start()
    worker.join()
    assert seen == [None]

    async def route_then_take(user: str) -> str | None:
        canarytrace.model("chat", user)
        await asyncio.sleep(0)
        decision = routing.take_decision(CANARY)
        return decision.user_hash if decision else None

    async def main() -> list[str | None]:
        return await asyncio.gather(*(route_then_take(f"u{i}") for i in range(5)))

    assert asyncio.run(main()) == [routing.user_hash(f"u{i}") for i in range(5)]
    assert routing.take_decision(CANARY).user_hash == routing.user_hash("main-user")


def test_rollback_during_a_canary_sends_everyone_to_production(registry_at) -> None:
    calls: list[tuple[str, str]] = []
    path = registry_at(50)
    routing.configure(path, on_rollback=lambda route, reason: calls.append((route, reason)))
    assert canary_users(1_000)
    canarytrace.rollback("chat", "latency doubled")
    canarytrace.rollback("chat", "latency doubled")  # a second call changes nothing
    assert not canary_users(1_000)
    decision = canarytrace.choose("chat", "user-1")
    assert (decision.model, decision.tier, decision.rollout_percent) == (
        PRODUCTION,
        "production",
        0,
    )
    assert calls == [("chat", "latency doubled")]


def test_rollback_after_a_completed_upgrade_sends_everyone_to_the_fallback(registry_at) -> None:
    registry_at(production=CANARY, canary=None, fallback=PRODUCTION)
    assert {canarytrace.model("chat", f"u{i}") for i in range(100)} == {CANARY}
    canarytrace.rollback("chat", "regression after the upgrade")
    assert {canarytrace.model("chat", f"u{i}") for i in range(100)} == {PRODUCTION}
    assert canarytrace.choose("chat").tier == "fallback"


def test_rollback_without_anything_to_fall_back_to_stays_on_production(registry_at) -> None:
    registry_at(canary=None, fallback=None)
    canarytrace.rollback("chat", "nothing older to go to")
    assert canarytrace.choose("chat", "u1").tier == "production"


def test_a_failing_on_rollback_hook_does_not_break_routing(
    registry_at, caplog: pytest.LogCaptureFixture
) -> None:
    def alert(route: str, reason: str) -> None:
        raise ConnectionError("pager unreachable")

    routing.configure(registry_at(50), on_rollback=alert)
    canarytrace.rollback("chat", "manual")
    assert canarytrace.model("chat", "u1") == PRODUCTION
    assert "on_rollback callback failed" in caplog.text


def test_unknown_route_names_the_route_and_the_known_ones(registry_at) -> None:
    path = registry_at()
    with pytest.raises(RoutingError, match=r"'chta'.*routes: chat") as unknown:
        canarytrace.model("chta", "u1")
    assert str(path) in str(unknown.value)
    with pytest.raises(RoutingError, match="chta"):
        canarytrace.rollback("chta", "typo")


def test_without_a_registry_the_error_says_where_it_looked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RegistryError) as default:
        canarytrace.model("chat", "u1")
    message = str(default.value)
    assert str(tmp_path / "models.yaml") in message and routing.REGISTRY_ENV in message
    assert "configure(registry=" in message
    assert routing.lookup(PRODUCTION) is None  # the instrumentation's question never raises

    monkeypatch.setenv(routing.REGISTRY_ENV, str(tmp_path / "elsewhere.yaml"))
    routing.reset()
    with pytest.raises(RegistryError, match=r"elsewhere\.yaml \(from \$CANARYTRACE_REGISTRY\)"):
        canarytrace.choose("chat")
    with pytest.raises(RegistryError, match=r"missing\.yaml"):
        canarytrace.configure(tmp_path / "missing.yaml")


def test_the_registry_is_found_by_env_then_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_registry(tmp_path / "models.yaml", registry_yaml(100))
    monkeypatch.chdir(tmp_path)
    assert canarytrace.model("chat", "u1") == CANARY
    other = write_registry(tmp_path / "other.yaml", registry_yaml(100, canary="acme-chat-20261101"))
    monkeypatch.setenv(routing.REGISTRY_ENV, str(other))
    routing.reset()
    assert canarytrace.model("chat", "u1") == "acme-chat-20261101"


def test_a_registry_object_can_be_passed_directly(tmp_path: Path) -> None:
    registry = load_registry(write_registry(tmp_path / "r.yaml", registry_yaml(100)))
    canarytrace.configure(registry)
    assert canarytrace.model("chat", "u1") == CANARY


def test_lookup_names_route_and_tier_of_a_model(registry_at) -> None:
    registry_at()
    assert routing.lookup(PRODUCTION) == ("chat", "production")
    assert routing.lookup(CANARY) == ("chat", "canary")
    assert routing.lookup(FALLBACK) == ("chat", "fallback")
    assert routing.lookup("gpt-4o") is None


def test_threads_route_like_one_thread_and_roll_back_once(registry_at) -> None:
    calls: list[str] = []
    routing.configure(registry_at(25), on_rollback=lambda route, reason: calls.append(reason))
    users = [f"user-{i}" for i in range(4_000)]
    expected = [canarytrace.model("chat", u) for u in users]
    start = threading.Barrier(8)
    results: dict[int, list[str]] = {}

    def work(n: int) -> None:
        start.wait()
        results[n] = [canarytrace.model("chat", u) for u in users]
        start.wait()  # everyone has routed; now all roll back at once
        canarytrace.rollback("chat", f"thread {n}")

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(result == expected for result in results.values())
    assert len(calls) == 1
    assert {canarytrace.model("chat", u) for u in users} == {PRODUCTION}


# --- the registry file, re-read when it changes -------------------------------------------
INTERVAL = 0.005


def after_the_interval() -> None:
    time.sleep(2 * INTERVAL)


def test_the_registry_flag_rolls_back_after_the_reread_interval(tmp_path: Path) -> None:
    path = write_registry(tmp_path / "models.yaml", registry_yaml(50))
    routing.configure(path, reload_interval=INTERVAL)
    cohort = canary_users(1_000)
    write_registry(path, registry_yaml(50, rollback=True))
    after_the_interval()
    assert not canary_users(1_000)
    assert canarytrace.choose("chat", "u1").rollout_percent == 0
    write_registry(path, registry_yaml(50))
    after_the_interval()
    assert canary_users(1_000) == cohort


def test_the_flag_after_a_completed_upgrade_switches_to_the_fallback(tmp_path: Path) -> None:
    upgraded = {"production": CANARY, "canary": None, "fallback": PRODUCTION}
    path = write_registry(tmp_path / "models.yaml", registry_yaml(**upgraded))
    routing.configure(path, reload_interval=INTERVAL)
    assert canarytrace.choose("chat", "u1").model == CANARY
    write_registry(path, registry_yaml(rollback=True, **upgraded))
    after_the_interval()
    decision = canarytrace.choose("chat", "u1")
    assert (decision.model, decision.tier) == (PRODUCTION, "fallback")


def test_within_the_interval_the_file_is_not_read_again(tmp_path: Path) -> None:
    path = write_registry(tmp_path / "models.yaml", registry_yaml(5))
    routing.configure(path, reload_interval=3600)
    before = canary_users(1_000)
    write_registry(path, registry_yaml(100, rollback=True))
    assert canary_users(1_000) == before


def test_a_stage_raised_in_the_file_keeps_every_canary_user(tmp_path: Path) -> None:
    path = write_registry(tmp_path / "models.yaml", registry_yaml(5))
    routing.configure(path, reload_interval=INTERVAL)
    at_5 = canary_users(10_000)
    write_registry(path, registry_yaml(25))
    after_the_interval()
    assert at_5 < canary_users(10_000)


def test_a_broken_edit_keeps_the_last_good_registry_and_warns_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write_registry(tmp_path / "models.yaml", registry_yaml(100))
    routing.configure(path, reload_interval=INTERVAL)
    write_registry(path, registry_yaml(100).replace("stage: 100", "stage: [oops"))
    for _ in range(3):
        after_the_interval()
        assert canarytrace.model("chat", "u1") == CANARY
    warnings = [r for r in caplog.records if "keeps the registry" in r.getMessage()]
    assert len(warnings) == 1 and str(path) in warnings[0].getMessage()
    write_registry(path, registry_yaml(100, rollback=True))
    after_the_interval()
    assert canarytrace.model("chat", "u1") == PRODUCTION


def test_an_in_process_rollback_holds_until_a_new_rollout(tmp_path: Path) -> None:
    path = write_registry(tmp_path / "models.yaml", registry_yaml(50))
    routing.configure(path, reload_interval=INTERVAL)
    canarytrace.rollback("chat", "manual")
    write_registry(path, registry_yaml(100))  # same tiers: the rollback still holds
    after_the_interval()
    assert canarytrace.model("chat", "u1") == PRODUCTION
    write_registry(path, registry_yaml(100, canary="acme-chat-20261101"))  # a new candidate
    after_the_interval()
    assert canarytrace.model("chat", "u1") == "acme-chat-20261101"


def test_threads_keep_routing_while_the_file_changes_under_them(tmp_path: Path) -> None:
    path = write_registry(tmp_path / "models.yaml", registry_yaml(25))
    routing.configure(path, reload_interval=0)  # every call checks the file
    users = [f"user-{i}" for i in range(300)]
    cohort_at_50 = {u for u in users if canarytrace.choose("chat", u).bucket < 5_000}
    started, stop = threading.Barrier(5), threading.Event()
    seen: list[list[str]] = []
    errors: list[BaseException] = []

    def route() -> None:
        try:
            seen.append([canarytrace.model("chat", u) for u in users])
            started.wait()
            while not stop.is_set():
                seen.append([canarytrace.model("chat", u) for u in users])
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=route) for _ in range(4)]
    for thread in threads:
        thread.start()
    started.wait()
    for text in (registry_yaml(50), registry_yaml(25), registry_yaml(50, rollback=True)):
        write_registry(path, text)
        time.sleep(0.005)
    stop.set()
    for thread in threads:
        thread.join()
    assert errors == []
    assert any(CANARY in answers for answers in seen)
    # Passes may straddle a re-read, yet nobody outside the largest cohort saw the canary.
    for answers in seen:
        assert {u for u, a in zip(users, answers, strict=True) if a == CANARY} <= cohort_at_50
    assert {canarytrace.model("chat", u) for u in users} == {PRODUCTION}


def test_a_fork_while_other_threads_hold_routings_locks_leaves_the_child_working(
    registry_at: Callable[..., Path],
) -> None:
    """A pre-forking server's worker must route, count and roll back on its own, even
    when the fork caught another thread inside routing, a breaker or a price lookup."""
    from canarytrace import pricing
    from tests.forking import in_forked_child

    registry_at(100)
    router = routing._current()
    breaker = router.breaker("chat")
    assert breaker is not None
    locks = [routing._router_lock, router.lock, breaker._lock, pricing._lock]
    holding, release = threading.Event(), threading.Event()

    def held_by_another_thread() -> None:
        for lock in locks:
            lock.acquire()
        holding.set()
        release.wait()
        for lock in locks:
            lock.release()

    other = threading.Thread(target=held_by_another_thread)
    other.start()
    holding.wait()

    def child() -> None:
        pricing._pricers.pop(("openai", "gpt-4o-mini-2024-07-18", None), None)
        pricing.cost_usd("openai", "gpt-4o-mini-2024-07-18", 10, 10)  # a model not priced yet
        for _ in range(20):  # enough failures to trip the breaker and roll back
            routing.record_result("chat", "canary", False)
        assert canarytrace.model("chat", "u1") == PRODUCTION
        routing.reset()

    try:
        _, code = in_forked_child(child)
    finally:
        release.set()
        other.join()
    assert code == 0
    assert canarytrace.model("chat", "u1") == CANARY  # the parent's canary is untouched
