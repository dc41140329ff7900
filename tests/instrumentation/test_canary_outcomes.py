"""What an instrumented call tells the canary's error-rate breaker, through the real SDKs.

A canary call that fails feeds the breaker of its route; one the application cancels
(its own timeout around a call that hangs, a task cancelled mid-stream) counts as a
failure too, deliberately: a canary that hangs until the application gives up must trip
the breaker as surely as one that answers with errors. The cancellation still reaches
the application unchanged, and the span ends once, with `error.type` naming it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

import canarytrace
from canarytrace import routing
from canarytrace.breaker import BreakerConfig
from tests.instrumentation.conftest import (
    BACKGROUND_FAILS,
    Telemetry,
    dropping_api,
    failing_in_reply,
    fake_api,
    openai_client,
)

PRODUCTION, CANARY = "gpt-4o-2024-08-06", "gpt-4o-2024-11-20"  # route `chat` of REGISTRY
MESSAGES = [{"role": "user", "content": "Say hello"}]
# Trips on the fifth failure in a row: few calls, the same rule as the default.
SMALL_BREAKER = BreakerConfig(window=10, min_calls=5, max_error_rate=0.2)


@pytest.fixture
def rollbacks(registry: Path) -> list[tuple[str, str]]:
    """Routing from the test registry, with a small breaker; the rollbacks it makes."""
    made: list[tuple[str, str]] = []
    routing.configure(
        registry, breaker=SMALL_BREAKER, on_rollback=lambda route, why: made.append((route, why))
    )
    return made


def _client(handler: Any) -> openai.AsyncOpenAI:
    http = httpx2.AsyncClient(transport=httpx2.MockTransport(handler))
    return openai.AsyncOpenAI(
        api_key="k", base_url="https://api.test/v1", http_client=http, max_retries=0
    )


async def _server_error(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(500, json={"error": {"message": "overloaded", "type": "server_error"}})


async def _never_answers(request: httpx2.Request) -> httpx2.Response:
    await asyncio.Event().wait()
    raise AssertionError("unreachable")


class _StallingStream(httpx2.AsyncByteStream):
    """The first event of a stream, then nothing more (a model that stalls mid-answer)."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        await asyncio.Event().wait()


async def _stalls_after_one_event(request: httpx2.Request) -> httpx2.Response:
    first = fake_api(request).read().split(b"\n\n")[0] + b"\n\n"
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, stream=_StallingStream(first)
    )


def test_failing_canary_calls_trip_the_breaker_and_production_takes_over(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        client = _client(_server_error)
        for _ in range(SMALL_BREAKER.min_calls):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model=CANARY, messages=MESSAGES)

    asyncio.run(main())
    assert len(rollbacks) == 1 and rollbacks[0][0] == "chat"
    assert canarytrace.choose("chat", "any-user").model == PRODUCTION
    spans = instrumented.llm_spans()
    assert [s.attributes["canarytrace.tier"] for s in spans] == ["canary"] * SMALL_BREAKER.min_calls
    assert {s.attributes["error.type"] for s in spans} == {"InternalServerError"}


def test_failing_production_calls_leave_the_canary_alone(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        client = _client(_server_error)
        for _ in range(3 * SMALL_BREAKER.window):
            with pytest.raises(openai.InternalServerError):
                await client.chat.completions.create(model=PRODUCTION, messages=MESSAGES)

    asyncio.run(main())
    assert rollbacks == []
    assert {s.attributes["canarytrace.tier"] for s in instrumented.llm_spans()} == {"production"}


def test_a_canary_that_hangs_until_the_app_times_out_trips_the_breaker(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        client = _client(_never_answers)
        for _ in range(SMALL_BREAKER.min_calls):
            call = client.chat.completions.create(model=CANARY, messages=MESSAGES)
            with pytest.raises(TimeoutError):  # the application's own timeout, as it set it
                await asyncio.wait_for(call, timeout=0.01)

    asyncio.run(main())
    assert len(rollbacks) == 1
    spans = instrumented.llm_spans()
    assert len(spans) == SMALL_BREAKER.min_calls  # each cancelled call ended its span once
    for span in spans:
        assert span.status.status_code.name == "ERROR"
        assert span.attributes["error.type"] == "CancelledError"


def test_a_cancelled_call_reraises_the_very_cancellation(instrumented: Telemetry) -> None:
    async def main() -> None:
        task = asyncio.create_task(
            _client(_never_answers).chat.completions.create(model=CANARY, messages=MESSAGES)
        )
        await asyncio.sleep(0.01)
        task.cancel("user went away")
        with pytest.raises(asyncio.CancelledError) as raised:
            await task
        assert raised.value.args == ("user went away",)
        assert task.cancelled()

    asyncio.run(main())
    assert instrumented.one_span().attributes["error.type"] == "CancelledError"


def test_a_stream_cancelled_between_events_ends_its_span_once_and_counts(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    async def read(client: openai.AsyncOpenAI, seen: list[Any], first: asyncio.Event) -> None:
        stream = await client.chat.completions.create(model=CANARY, messages=MESSAGES, stream=True)
        async for chunk in stream:
            seen.append(chunk)
            first.set()

    async def main() -> list[Any]:
        client = _client(_stalls_after_one_event)
        seen: list[Any] = []
        for _ in range(SMALL_BREAKER.min_calls):
            first = asyncio.Event()
            reading = asyncio.create_task(read(client, seen, first))
            await first.wait()  # cancelled between events, whatever the machine's speed
            reading.cancel()
            with pytest.raises(asyncio.CancelledError):
                await reading
        return seen

    seen = asyncio.run(main())
    assert len(seen) == SMALL_BREAKER.min_calls  # the first chunk of each reached the app
    assert len(rollbacks) == 1
    spans = instrumented.llm_spans()
    assert len(spans) == SMALL_BREAKER.min_calls
    assert {s.attributes["error.type"] for s in spans} == {"CancelledError"}
    assert {s.attributes["gen_ai.response.id"] for s in spans} == {"chatcmpl-1"}


def test_streams_the_app_stops_reading_early_are_not_failures(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    async def main() -> None:
        client = _client(_stalls_after_one_event)
        for _ in range(3 * SMALL_BREAKER.window):
            stream = await client.chat.completions.create(
                model=CANARY, messages=MESSAGES, stream=True
            )
            async for _chunk in stream:
                break  # the application has what it needs
            await stream.close()

    asyncio.run(main())
    assert rollbacks == []
    spans = instrumented.llm_spans()
    assert len(spans) == 3 * SMALL_BREAKER.window
    assert {s.status.status_code.name for s in spans} == {"UNSET"}


def test_canary_calls_run_in_the_background_count_when_they_end(
    instrumented: Telemetry, registry: Path
) -> None:
    """Their creation says nothing of how they go: only their end counts. Had the five
    creations counted as successes, five failures of ten would stay under 60 %."""
    made: list[tuple[str, str]] = []
    breaker = BreakerConfig(window=10, min_calls=5, max_error_rate=0.6)
    routing.configure(registry, breaker=breaker, on_rollback=lambda r, why: made.append((r, why)))
    client = openai_client()
    queued = [
        client.responses.create(model=CANARY, input=BACKGROUND_FAILS, background=True)
        for _ in range(breaker.min_calls)
    ]
    assert made == []
    for response in queued:
        assert client.responses.retrieve(response.id).status == "failed"
    assert len(made) == 1 and made[0][0] == "chat"


def test_canary_streams_of_the_responses_api_that_drop_count_as_failures(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    """Dropped after `response.created`, whose response says in progress: a foreground
    call's end is the drop, unlike a background one's, which goes on on the server."""
    http = httpx2.Client(transport=httpx2.MockTransport(dropping_api(events=1)))
    client = openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
    for _ in range(SMALL_BREAKER.min_calls):
        with pytest.raises(openai.APIConnectionError):
            list(client.responses.create(model=CANARY, input="Hi", stream=True))

    assert len(rollbacks) == 1
    for span in instrumented.llm_spans():
        assert "canarytrace.background.status" not in span.attributes


def test_canary_responses_that_fail_in_their_reply_count_as_failures(
    instrumented: Telemetry, rollbacks: list[tuple[str, str]]
) -> None:
    """OpenAI reports these in a successful HTTP reply; the breaker counted them as
    successes."""
    http = httpx2.Client(transport=httpx2.MockTransport(failing_in_reply("error", CANARY)))
    client = openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
    for _ in range(SMALL_BREAKER.min_calls):
        list(client.responses.create(model=CANARY, input="Hi", stream=True))
    assert len(rollbacks) == 1 and rollbacks[0][0] == "chat"
