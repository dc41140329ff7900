"""Anthropic: every wrapped method gives exactly one LLM span, canarytrace's.

anthropic 2.x opens its own CLIENT span per call (scope `com.anthropic.sdk.python`)
when it has a TracerProvider; the clients here hand it the test provider, so a doubled
span would show up in the same exporter.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import pytest

from tests.instrumentation.conftest import TEXT_CHUNKS, Telemetry, anthropic_client

MODEL = "claude-3-5-sonnet-20241022"
MESSAGES = [{"role": "user", "content": "Say hello"}]
PARAMS = {"max_tokens": 64}  # anthropic 2.14 has no temperature or top_p


def create(c: Any) -> Any:
    return c.messages.create(model=MODEL, messages=MESSAGES, **PARAMS)


def create_stream(c: Any) -> Any:
    return list(c.messages.create(model=MODEL, messages=MESSAGES, stream=True, **PARAMS))


def stream_text(c: Any) -> Any:
    with c.messages.stream(model=MODEL, messages=MESSAGES, **PARAMS) as stream:
        return "".join(stream.text_stream)


def stream_final_message(c: Any) -> Any:
    with c.messages.stream(model=MODEL, messages=MESSAGES, **PARAMS) as stream:
        return stream.get_final_message()


def parse(c: Any) -> Any:
    return c.messages.parse(model=MODEL, messages=MESSAGES, **PARAMS)


def beta_create(c: Any) -> Any:
    return c.beta.messages.create(model=MODEL, messages=MESSAGES, **PARAMS)


def beta_parse(c: Any) -> Any:
    return c.beta.messages.parse(model=MODEL, messages=MESSAGES, **PARAMS)


def beta_stream_final_message(c: Any) -> Any:
    with c.beta.messages.stream(model=MODEL, messages=MESSAGES, **PARAMS) as stream:
        return stream.get_final_message()


async def acreate(c: Any) -> Any:
    return await c.messages.create(model=MODEL, messages=MESSAGES, **PARAMS)


async def acreate_stream(c: Any) -> Any:
    stream = await c.messages.create(model=MODEL, messages=MESSAGES, stream=True, **PARAMS)
    return [event async for event in stream]


async def astream_text(c: Any) -> Any:
    async with c.messages.stream(model=MODEL, messages=MESSAGES, **PARAMS) as stream:
        return "".join([text async for text in stream.text_stream])


async def astream_final_message(c: Any) -> Any:
    async with c.messages.stream(model=MODEL, messages=MESSAGES, **PARAMS) as stream:
        return await stream.get_final_message()


async def aparse(c: Any) -> Any:
    return await c.messages.parse(model=MODEL, messages=MESSAGES, **PARAMS)


async def abeta_create(c: Any) -> Any:
    return await c.beta.messages.create(model=MODEL, messages=MESSAGES, **PARAMS)


async def abeta_parse(c: Any) -> Any:
    return await c.beta.messages.parse(model=MODEL, messages=MESSAGES, **PARAMS)


async def abeta_stream_text(c: Any) -> Any:
    async with c.beta.messages.stream(model=MODEL, messages=MESSAGES, **PARAMS) as stream:
        return "".join([text async for text in stream.text_stream])


METHODS = [
    create,
    create_stream,
    stream_text,
    stream_final_message,
    parse,
    beta_create,
    beta_parse,
    beta_stream_final_message,
    acreate,
    acreate_stream,
    astream_text,
    astream_final_message,
    aparse,
    abeta_create,
    abeta_parse,
    abeta_stream_text,
]


def run(method: Callable[[Any], Any], telemetry: Telemetry) -> Any:
    if asyncio.iscoroutinefunction(method):
        return asyncio.run(method(anthropic_client(True, telemetry.provider)))
    return method(anthropic_client(False, telemetry.provider))


@pytest.mark.parametrize("method", METHODS, ids=lambda m: m.__name__)
def test_each_method_gives_exactly_one_llm_span(
    instrumented: Telemetry, method: Callable[[Any], Any]
) -> None:
    run(method, instrumented)
    span = instrumented.one_span()  # one span with gen_ai.request.model, in any scope
    attrs = dict(span.attributes)
    assert span.instrumentation_scope.name == "canarytrace"
    assert span.name == f"chat {MODEL}"
    assert span.kind.name == "CLIENT"
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["gen_ai.request.max_tokens"] == 64
    assert attrs["gen_ai.response.model"] == MODEL
    assert attrs["gen_ai.response.id"] == "msg_1"
    assert attrs["gen_ai.response.finish_reasons"] == ("end_turn",)
    # Anthropic counts cached input apart; the span's input includes it (semconv).
    assert attrs["gen_ai.usage.input_tokens"] == 111
    assert attrs["gen_ai.usage.cache_read.input_tokens"] == 100
    # The final, cumulative count: not 1 + 4.
    assert attrs["gen_ai.usage.output_tokens"] == 4
    assert attrs["canarytrace.tier"] == "production"
    assert attrs["canarytrace.route"] == "assist"
    assert attrs["canarytrace.pinned"] is True
    assert attrs["canarytrace.cost_usd"] > 0
    assert attrs["gen_ai.request.stream"] is ("stream" in method.__name__)
    if "stream" in method.__name__:
        assert attrs["canarytrace.time_to_first_token_ms"] >= 0


def test_without_canarytrace_the_sdk_span_is_there(telemetry: Telemetry) -> None:
    """The control for the test above: the native span exists when we do not replace it."""
    create(anthropic_client(False, telemetry.provider))
    (span,) = telemetry.llm_spans()
    assert span.instrumentation_scope.name == "com.anthropic.sdk.python"


def test_native_spans_return_after_uninstrument(telemetry: Telemetry) -> None:
    from canarytrace.instrumentation import instrument, uninstrument

    instrument(tracer_provider=telemetry.provider)
    uninstrument()
    create(anthropic_client(False, telemetry.provider))
    assert [s.instrumentation_scope.name for s in telemetry.llm_spans()] == [
        "com.anthropic.sdk.python"
    ]


def test_stream_helpers_return_what_the_sdk_returns(instrumented: Telemetry) -> None:
    assert stream_text(anthropic_client()) == "".join(TEXT_CHUNKS)
    message = stream_final_message(anthropic_client())
    assert message.content[0].text == "".join(TEXT_CHUNKS)
    assert message.usage.output_tokens == 4


def test_with_raw_response_keeps_working(instrumented: Telemetry) -> None:
    raw = anthropic_client().messages.with_raw_response.create(
        model=MODEL, messages=MESSAGES, **PARAMS
    )
    assert raw.http_response.status_code == 200
    assert raw.parse().id == "msg_1"
    assert instrumented.one_span().attributes["gen_ai.usage.output_tokens"] == 4


def test_with_streaming_response_keeps_working(instrumented: Telemetry) -> None:
    client = anthropic_client()
    with client.messages.with_streaming_response.create(
        model=MODEL, messages=MESSAGES, **PARAMS
    ) as response:
        assert response.parse().id == "msg_1"
    assert instrumented.one_span().attributes["gen_ai.request.model"] == MODEL


def test_a_client_whose_base_url_changes_reports_the_new_server(instrumented: Telemetry) -> None:
    client = anthropic_client()
    create(client)
    client.base_url = "http://proxy.internal:8080"
    create(client)
    first, second = instrumented.llm_spans()
    assert (first.attributes["server.address"], first.attributes["server.port"]) == (
        "api.test",
        443,
    )
    assert (second.attributes["server.address"], second.attributes["server.port"]) == (
        "proxy.internal",
        8080,
    )


def test_a_new_registry_changes_the_tier_of_the_next_call(
    instrumented: Telemetry, tmp_path: Path
) -> None:
    from canarytrace import routing

    client = anthropic_client()
    create(client)
    promoted = tmp_path / "promoted.yaml"
    promoted.write_text(
        "routes:\n  assist:\n    production: claude-sonnet-4-20250514\n"
        f"    canary: {MODEL}\n    stages: [5, 25, 50, 100]\n    stage: 5\n"
        f"models:\n  - {{id: {MODEL}, provider: anthropic}}\n"
        "  - {id: claude-sonnet-4-20250514, provider: anthropic}\n",
        encoding="utf-8",
    )
    routing.configure(registry=promoted)
    create(client)
    before, after = instrumented.llm_spans()
    assert (before.attributes["canarytrace.route"], before.attributes["canarytrace.tier"]) == (
        "assist",
        "production",
    )
    assert (after.attributes["canarytrace.route"], after.attributes["canarytrace.tier"]) == (
        "assist",
        "canary",
    )


#: What anthropic's own span records about a call under another name on canarytrace's.
_RENAMED = {
    "anthropic.message.stop_reason": "gen_ai.response.finish_reasons",
    # The conventions' name; a count of 0 is left out, like the cache reads'.
    "gen_ai.usage.cache_write.input_tokens": "gen_ai.usage.cache_creation.input_tokens",
}
#: Compared by presence only: times, which differ from one call to the next, and the
#: error type, which canarytrace gives as the exception's class (the conventions'
#: fallback, one vocabulary across providers), the SDK as the API's error type.
_PRESENCE = {"gen_ai.response.time_to_first_chunk", "error.type"}
#: What it records that canarytrace's span leaves out: the HTTP exchange, which is an
#: HTTP client span's to describe; the GenAI conventions' `server.*` name the server.
_HTTP = ("http.", "url.")


def _lost(native: Any, ours: Any) -> dict[str, Any]:
    """What anthropic's span `native` recorded that canarytrace's span `ours` lacks."""
    missing = {}
    for name, value in native.attributes.items():
        if name.startswith(_HTTP):
            continue
        if name in _PRESENCE:
            if name not in ours.attributes:
                missing[name] = value
        elif name in _RENAMED:
            found = ours.attributes.get(_RENAMED[name], (0,) if value == 0 else None)
            if found not in (value, (value,)):
                missing[name] = value
        elif ours.attributes.get(name) != value:
            missing[name] = value
    return missing


def _native_and_ours(telemetry: Telemetry, call: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The span anthropic writes for `call`, then the one canarytrace writes instead."""
    from canarytrace.instrumentation import instrument, uninstrument

    call(anthropic_client(False, telemetry.provider))
    (native,) = telemetry.llm_spans()
    assert native.instrumentation_scope.name == "com.anthropic.sdk.python"
    telemetry.exporter.clear()
    instrument(tracer_provider=telemetry.provider)
    try:
        call(anthropic_client(False, telemetry.provider))
    finally:
        uninstrument()
    ours = telemetry.one_span()
    assert ours.instrumentation_scope.name == "canarytrace"
    return native, ours


def _settings_call(client: Any, stream: bool) -> Any:
    """A call that sets everything anthropic's own span records about a request."""
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 64,
        "messages": MESSAGES,
        "betas": ["context-1m-2025-08-07", "fast-mode-2026-02-01"],
        "thinking": {"type": "enabled", "budget_tokens": 32},
        "output_config": {"effort": "high", "format": {"type": "json_schema", "schema": {}}},
        "service_tier": "auto",
        # A compaction's tokens are billed apart; anthropic's span records them.
        "context_management": {"edits": [{"type": "compact_20260112"}]},
    }
    if stream:
        return list(client.beta.messages.create(stream=True, **kwargs))
    return client.beta.messages.create(**kwargs)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_the_span_keeps_what_anthropics_own_span_records(
    telemetry: Telemetry, stream: bool
) -> None:
    """canarytrace replaces the SDK's span: the replacement must not lose what the SDK
    recorded (settings of the request, how it was served, the request id)."""
    native, ours = _native_and_ours(telemetry, lambda client: _settings_call(client, stream))
    assert _lost(native, ours) == {}
    assert ours.attributes["anthropic.beta"] == ("context-1m-2025-08-07", "fast-mode-2026-02-01")
    assert ours.attributes["gen_ai.request.reasoning.level"] == "high"
    assert ours.attributes["gen_ai.output.type"] == "json"
    assert ours.attributes["anthropic.request.id"] == "req_test1"
    assert ours.attributes["gen_ai.usage.reasoning.output_tokens"] == 3
    assert ours.attributes["anthropic.usage.compaction.output_tokens"] == 200


BETA_CALL = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": MESSAGES}
BETA_HEADER_CALLS = {
    # The betas of older code, which set the header itself.
    "extra_headers": lambda client: client.messages.create(
        extra_headers={"anthropic-beta": "context-1m-2025-08-07, fast-mode-2026-02-01"},
        **BETA_CALL,
    ),
    "default_headers": lambda client: client.with_options(
        default_headers={"anthropic-beta": "context-1m-2025-08-07"}
    ).messages.create(**BETA_CALL),
    # The SDK sends a call's extra headers over `betas=`, and `betas=` over the client's.
    "extra_headers over betas": lambda client: client.beta.messages.create(
        betas=["fast-mode-2026-02-01"],
        extra_headers={"anthropic-beta": "context-1m-2025-08-07"},
        **BETA_CALL,
    ),
    "betas over default_headers": lambda client: client.with_options(
        default_headers={"anthropic-beta": "fast-mode-2026-02-01"}
    ).beta.messages.create(betas=["context-1m-2025-08-07"], **BETA_CALL),
    "stream() with extra_headers": lambda client: _streamed(
        client, extra_headers={"Anthropic-Beta": "context-1m-2025-08-07"}
    ),
}


def _streamed(client: Any, **kwargs: Any) -> Any:
    with client.messages.stream(**kwargs, **BETA_CALL) as stream:
        return stream.get_final_message()


@pytest.mark.parametrize("call", BETA_HEADER_CALLS.values(), ids=BETA_HEADER_CALLS.keys())
def test_the_betas_a_request_sends_are_those_recorded_however_they_were_set(
    telemetry: Telemetry, call: Callable[[Any], Any]
) -> None:
    """As anthropic's own span records them: from the header the request sent."""
    native, ours = _native_and_ours(telemetry, call)
    assert _lost(native, ours) == {}
    assert ours.attributes["anthropic.beta"][0] == "context-1m-2025-08-07"
    assert ours.attributes["anthropic.beta"] == native.attributes["anthropic.beta"]


def test_a_beta_header_the_call_omits_is_not_recorded(telemetry: Telemetry) -> None:
    """The SDKs' `Omit` takes a client's default header out of one call."""

    def call(client: Any) -> Any:
        with_beta = client.with_options(default_headers={"anthropic-beta": "fast-mode-2026-02-01"})
        return with_beta.messages.create(
            extra_headers={"anthropic-beta": anthropic.Omit()}, **BETA_CALL
        )

    native, ours = _native_and_ours(telemetry, call)
    assert "anthropic.beta" not in native.attributes
    assert "anthropic.beta" not in ours.attributes


def _failing_call(client: Any) -> None:
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="error-model", max_tokens=5, messages=MESSAGES)


def test_a_failed_call_keeps_what_anthropics_own_span_records(telemetry: Telemetry) -> None:
    """Above all the request id, which is what support asks for about a failure."""
    native, ours = _native_and_ours(telemetry, _failing_call)
    assert _lost(native, ours) == {}
    assert ours.attributes["anthropic.request.id"] == "req_test1"
    assert ours.attributes["error.type"] == "BadRequestError"
