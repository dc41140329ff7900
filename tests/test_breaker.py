"""The error-rate breaker: trips on a burst of canary errors, never on a healthy stream."""

from __future__ import annotations

import json
import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import canarytrace
from canarytrace import routing
from canarytrace.breaker import Breaker, BreakerConfig
from canarytrace.errors import RegistryError
from canarytrace.registry import Registry

PRODUCTION = "acme-chat-20260101"
CANARY = "acme-chat-20260601"
VOLUME = 5_000


def chat_registry() -> Registry:
    return Registry.model_validate(
        {
            "routes": {"chat": {"production": PRODUCTION, "canary": CANARY, "stage": 100}},
            "models": [{"id": m, "provider": "other"} for m in (PRODUCTION, CANARY)],
        }
    )


@pytest.fixture(autouse=True)
def clean_routing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.delenv(routing.HASH_KEY_ENV, raising=False)
    routing.reset()
    yield
    routing.reset()


@pytest.fixture
def alerts() -> list[tuple[str, str]]:
    """Route `chat` at 100 % canary and collect what on_rollback receives."""
    calls: list[tuple[str, str]] = []
    routing.configure(chat_registry(), on_rollback=lambda route, why: calls.append((route, why)))
    return calls


def rollback_warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "rolled back" in r.getMessage()
    ]


def first_trip(breaker: Breaker, outcomes: list[bool]) -> int | None:
    return next((i for i, ok in enumerate(outcomes) if breaker.record(ok) is not None), None)


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"window": 0}, "window"),
        ({"window": 10, "min_calls": 11}, "min_calls"),
        ({"min_calls": 0}, "min_calls"),
        ({"max_error_rate": 1.0}, "max_error_rate"),
        ({"max_error_rate": -0.1}, "max_error_rate"),
    ],
)
def test_config_refuses_values_that_make_no_breaker(config: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=f"BreakerConfig.{field}"):
        BreakerConfig(**config)  # type: ignore[arg-type]


def test_the_sliding_window_trips_exactly_where_a_full_recount_says() -> None:
    config = BreakerConfig(window=10, min_calls=5, max_error_rate=0.3)
    rng = random.Random(3)
    tripped = 0
    for _ in range(300):
        outcomes = [rng.random() > 0.15 for _ in range(80)]
        expected = None
        for i in range(len(outcomes)):
            window = outcomes[max(0, i + 1 - config.window) : i + 1]
            if len(window) >= config.min_calls and window.count(False) > 0.3 * len(window):
                expected = i
                break
        assert first_trip(Breaker(config), outcomes) == expected
        tripped += expected is not None
    assert 0 < tripped < 300  # the streams exercise both outcomes


def test_no_verdict_before_min_calls_and_none_at_exactly_the_threshold() -> None:
    config = BreakerConfig(window=10, min_calls=10, max_error_rate=0.2)
    assert first_trip(Breaker(config), [False] * 9) is None
    at_threshold = [False, False] + [True] * 8  # 2 of 10 = 20 %, not above it
    assert first_trip(Breaker(config), at_threshold * 5) is None
    assert first_trip(Breaker(config), [False] * 3 + [True] * 7) == 9


def test_a_healthy_canary_stream_never_trips(
    alerts: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(20261125)
    for _ in range(VOLUME):
        routing.record_result("chat", "canary", rng.random() >= 0.02)  # 2 % errors
    assert canarytrace.model("chat", "u1") == CANARY
    assert alerts == [] and rollback_warnings(caplog) == []


def test_an_error_burst_trips_once_and_sends_the_route_to_production(
    alerts: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    rng = random.Random(20261125)
    stream = [rng.random() >= 0.02 for _ in range(VOLUME)]
    stream[2_000:2_060] = [False] * 60  # the canary's upstream falls over for a minute
    for ok in stream:
        routing.record_result("chat", "canary", ok)
    assert len(alerts) == 1
    route, reason = alerts[0]
    assert route == "chat" and "error-rate breaker" in reason
    assert len(rollback_warnings(caplog)) == 1
    decision = canarytrace.choose("chat", "u1")
    assert (decision.model, decision.tier) == (PRODUCTION, "production")


def test_only_canary_outcomes_count(alerts: list[tuple[str, str]]) -> None:
    for _ in range(500):
        routing.record_result("chat", "production", False)
        routing.record_result("chat", "fallback", False)
        routing.record_result("no-such-route", "canary", False)
    assert alerts == []
    assert canarytrace.model("chat", "u1") == CANARY


def test_a_new_canary_in_the_registry_starts_with_a_fresh_breaker(tmp_path: Path) -> None:
    def save(canary: str) -> None:
        data = chat_registry().model_dump(mode="json", exclude_defaults=True)
        data["routes"]["chat"]["canary"] = data["models"][1]["id"] = canary
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(data), encoding="utf-8")
        os.replace(tmp, path)  # a new file, as editors save

    path = tmp_path / "models.json"
    save(CANARY)
    config = BreakerConfig(window=10, min_calls=10)
    routing.configure(path, breaker=config, reload_interval=0.005)
    for _ in range(10):
        routing.record_result("chat", "canary", False)
    assert canarytrace.model("chat", "u1") == PRODUCTION
    save("acme-chat-20261101")
    time.sleep(0.01)
    assert canarytrace.model("chat", "u1") == "acme-chat-20261101"
    for _ in range(9):  # the old canary's failures do not count against the new one
        routing.record_result("chat", "canary", False)
    assert canarytrace.model("chat", "u1") == "acme-chat-20261101"


def test_the_configured_thresholds_apply() -> None:
    calls: list[str] = []
    routing.configure(
        chat_registry(),
        breaker=BreakerConfig(window=4, min_calls=4, max_error_rate=0.5),
        on_rollback=lambda route, why: calls.append(why),
    )
    for ok in (True, False, True, False):  # 50 %: at the threshold, not above
        routing.record_result("chat", "canary", ok)
    assert calls == []
    routing.record_result("chat", "canary", False)  # the window is now F T F F
    assert len(calls) == 1 and "3 of the last 4" in calls[0]


def test_concurrent_failures_trip_the_breaker_once(
    alerts: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    start = threading.Barrier(8)

    def fail() -> None:
        start.wait()
        for _ in range(200):
            routing.record_result("chat", "canary", False)

    threads = [threading.Thread(target=fail) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(alerts) == 1 and len(rollback_warnings(caplog)) == 1
    assert canarytrace.model("chat", "u1") == PRODUCTION


def test_a_routes_own_breaker_in_the_registry_wins_over_the_process_setting() -> None:
    strict = BreakerConfig(window=4, min_calls=4, max_error_rate=0.5)
    registry = chat_registry()
    chat = registry.routes["chat"].model_copy(update={"breaker": strict})
    routing.configure(registry.model_copy(update={"routes": {"chat": chat}}))
    for ok in (False, True, False, False):  # 3 of 4 fail: the route's breaker trips
        routing.record_result("chat", "canary", ok)
    assert canarytrace.model("chat", "u1") == PRODUCTION


def test_a_broken_breaker_setting_is_named_with_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    text = chat_registry().model_dump(mode="json", exclude_defaults=True)
    text["routes"]["chat"]["breaker"] = {"window": 10, "min_calls": 50}
    path.write_text(json.dumps(text, indent=2), encoding="utf-8")
    with pytest.raises(RegistryError) as error:
        routing.configure(path)
    message = str(error.value)
    assert f"{path}:" in message and "routes.chat.breaker" in message
    assert "min_calls must be between 1 and window" in message
