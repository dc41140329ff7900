"""Every wrapped OpenAI method, sync and async, streaming and not, gives one span."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.instrumentation.conftest import REQUEST_ID, TEXT_CHUNKS, Telemetry, openai_client

MODEL = "gpt-4o-2024-08-06"
MESSAGES = [{"role": "user", "content": "Say hello"}]
PARAMS = {"temperature": 0.5, "max_tokens": 50, "top_p": 0.9, "seed": 7}


def chat_create(c: Any) -> Any:
    return c.chat.completions.create(model=MODEL, messages=MESSAGES, **PARAMS)


def chat_parse(c: Any) -> Any:
    return c.chat.completions.parse(model=MODEL, messages=MESSAGES, **PARAMS)


def chat_stream(c: Any) -> Any:
    return [
        chunk for chunk in c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    ]


def chat_stream_helper(c: Any) -> Any:
    with c.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        text = "".join(e.delta for e in stream if e.type == "content.delta")
        return text, stream.get_final_completion()


def responses_create(c: Any) -> Any:
    return c.responses.create(model=MODEL, input="Say hello", temperature=0.5)


def responses_parse(c: Any) -> Any:
    return c.responses.parse(model=MODEL, input="Say hello", temperature=0.5)


def responses_stream_helper(c: Any) -> Any:
    with c.responses.stream(model=MODEL, input="Say hello") as stream:
        return [event for event in stream], stream.get_final_response()


def responses_stream(c: Any) -> Any:
    return [event for event in c.responses.create(model=MODEL, input="Say hello", stream=True)]


def embeddings(c: Any) -> Any:
    return c.embeddings.create(model="text-embedding-3-small", input="hello")


async def achat_create(c: Any) -> Any:
    return await c.chat.completions.create(model=MODEL, messages=MESSAGES, **PARAMS)


async def achat_parse(c: Any) -> Any:
    return await c.chat.completions.parse(model=MODEL, messages=MESSAGES, **PARAMS)


async def achat_stream(c: Any) -> Any:
    stream = await c.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    return [chunk async for chunk in stream]


async def achat_stream_helper(c: Any) -> Any:
    async with c.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        text = "".join([e.delta async for e in stream if e.type == "content.delta"])
        return text, await stream.get_final_completion()


async def aresponses_create(c: Any) -> Any:
    return await c.responses.create(model=MODEL, input="Say hello", temperature=0.5)


async def aresponses_parse(c: Any) -> Any:
    return await c.responses.parse(model=MODEL, input="Say hello", temperature=0.5)


async def aresponses_stream_helper(c: Any) -> Any:
    async with c.responses.stream(model=MODEL, input="Say hello") as stream:
        return [event async for event in stream], await stream.get_final_response()


async def aresponses_stream(c: Any) -> Any:
    stream = await c.responses.create(model=MODEL, input="Say hello", stream=True)
    return [event async for event in stream]


async def aembeddings(c: Any) -> Any:
    return await c.embeddings.create(model="text-embedding-3-small", input="hello")


SYNC = [
    chat_create,
    chat_parse,
    chat_stream,
    chat_stream_helper,
    responses_create,
    responses_parse,
    responses_stream,
    responses_stream_helper,
    embeddings,
]
ASYNC = [
    achat_create,
    achat_parse,
    achat_stream,
    achat_stream_helper,
    aresponses_create,
    aresponses_parse,
    aresponses_stream,
    aresponses_stream_helper,
    aembeddings,
]


def run(method: Callable[[Any], Any]) -> Any:
    if asyncio.iscoroutinefunction(method):
        return asyncio.run(method(openai_client(is_async=True)))
    return method(openai_client())


@pytest.mark.parametrize("method", SYNC + ASYNC, ids=lambda m: m.__name__)
def test_each_method_gives_one_client_span_with_genai_attributes(
    instrumented: Telemetry, method: Callable[[Any], Any]
) -> None:
    run(method)
    span = instrumented.one_span()
    attrs = dict(span.attributes)
    request_model = attrs["gen_ai.request.model"]
    operation = "embeddings" if "embeddings" in method.__name__ else "chat"
    assert span.name == f"{operation} {request_model}"
    assert span.kind.name == "CLIENT"
    assert span.instrumentation_scope.name == "canarytrace"
    assert attrs["gen_ai.operation.name"] == operation
    assert attrs["gen_ai.provider.name"] == attrs["gen_ai.system"] == "openai"
    assert attrs["gen_ai.response.model"] == request_model
    assert attrs["server.address"] == "api.test"
    assert attrs["server.port"] == 443
    assert attrs["canarytrace.pinned"] is ("2024" in request_model)
    assert attrs["openai.request.id"] == REQUEST_ID
    assert span.status.status_code.name == "UNSET"
    assert attrs["gen_ai.request.stream"] is ("stream" in method.__name__)
    if "stream" in method.__name__:
        assert attrs["gen_ai.response.time_to_first_chunk"] >= 0
        assert attrs["canarytrace.time_to_first_token_ms"] >= 0
    if operation == "chat":
        assert attrs["gen_ai.response.id"] in {"chatcmpl-1", "resp_1"}
        assert attrs["gen_ai.response.finish_reasons"] in {("stop",), ("completed",)}
        assert attrs["canarytrace.route"] == "chat"
        assert attrs["canarytrace.tier"] == "production"
        assert attrs["canarytrace.alias_drift"] is False
    if method.__name__.endswith("chat_create") or method.__name__.endswith("chat_parse"):
        assert attrs["gen_ai.request.temperature"] == 0.5
        assert attrs["gen_ai.request.max_tokens"] == 50
        assert attrs["gen_ai.request.top_p"] == 0.9
        assert attrs["gen_ai.request.seed"] == 7
    # Usage is reported except by a chat stream without include_usage (never added silently).
    if "chat_stream" not in method.__name__:
        assert attrs["gen_ai.usage.input_tokens"] > 0
        assert attrs["canarytrace.cost_usd"] > 0
    else:
        assert "gen_ai.usage.input_tokens" not in attrs


def test_stream_helper_text_is_untouched(instrumented: Telemetry) -> None:
    text, completion = chat_stream_helper(openai_client())
    assert text == "".join(TEXT_CHUNKS)
    assert completion.choices[0].message.content == text


def test_include_stream_usage_is_opt_in_and_gives_usage(telemetry: Telemetry) -> None:
    from canarytrace.instrumentation import instrument, uninstrument

    instrument(tracer_provider=telemetry.provider, include_stream_usage=True)
    try:
        chunks = chat_stream(openai_client())
    finally:
        uninstrument()
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    attrs = telemetry.one_span().attributes
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 3


def test_with_raw_response_returns_the_raw_object_and_traces(instrumented: Telemetry) -> None:
    raw = openai_client().chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.http_response.status_code == 200
    assert raw.parse().choices[0].message.content == "".join(TEXT_CHUNKS)
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["openai.request.id"] == REQUEST_ID


def test_with_streaming_response_leaves_the_body_to_the_application(
    instrumented: Telemetry,
) -> None:
    client = openai_client()
    with client.chat.completions.with_streaming_response.create(
        model=MODEL, messages=MESSAGES
    ) as response:
        lines = list(response.iter_lines())
    assert any("chatcmpl-1" in line for line in lines)
    assert instrumented.one_span().attributes["gen_ai.request.model"] == MODEL


def test_routing_decision_labels_the_call(instrumented: Telemetry) -> None:
    from canarytrace import routing

    users = [f"user-{n}" for n in range(40)]
    decisions = []
    for user in users:
        decision = routing.choose("chat", user_id=user)
        openai_client().chat.completions.create(model=decision.model, messages=MESSAGES)
        decisions.append(decision)
    spans = instrumented.llm_spans()
    assert len(spans) == len(users)
    for decision, span in zip(decisions, spans, strict=True):
        attrs = span.attributes
        assert attrs["gen_ai.request.model"] == decision.model
        assert attrs["canarytrace.tier"] == decision.tier
        assert attrs["canarytrace.cohort_bucket"] == decision.bucket
        assert attrs["canarytrace.rollout_percent"] == 50
        assert attrs["canarytrace.user_hash"] == decision.user_hash
        assert "user-" not in str(dict(attrs))
    assert {d.tier for d in decisions} == {"production", "canary"}


def test_request_user_is_recorded_only_as_a_keyed_hash(instrumented: Telemetry) -> None:
    from canarytrace import routing

    openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, user="alice@example")
    attrs = instrumented.one_span().attributes
    assert attrs["canarytrace.user_hash"] == routing.user_hash("alice@example")
    assert "alice" not in str(dict(attrs))


def test_genai_metrics_carry_model_and_tier(instrumented: Telemetry) -> None:
    chat_create(openai_client())
    data = instrumented.metrics.get_metrics_data()
    points: dict[str, list[Any]] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                points[metric.name] = list(metric.data.data_points)
    assert set(points) == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "canarytrace.cost",
    }
    (duration,) = points["gen_ai.client.operation.duration"]
    assert duration.attributes["gen_ai.request.model"] == MODEL
    assert duration.attributes["canarytrace.tier"] == "production"
    tokens = {p.attributes["gen_ai.token.type"]: p.sum for p in points["gen_ai.client.token.usage"]}
    assert tokens == {"input": 12, "output": 3}
    (cost,) = points["canarytrace.cost"]
    span_cost = instrumented.one_span().attributes["canarytrace.cost_usd"]
    assert cost.value == pytest.approx(span_cost)


def _chat_with_settings(stream: bool) -> None:
    create = openai_client().chat.completions.create
    kwargs: dict[str, Any] = {
        "model": MODEL,
        "messages": MESSAGES,
        "n": 2,
        "stop": "END",
        "frequency_penalty": 0.5,
        "presence_penalty": -0.25,
        "reasoning_effort": "low",
        "service_tier": "flex",
        "response_format": {"type": "json_object"},
    }
    if stream:
        list(create(stream=True, stream_options={"include_usage": True}, **kwargs))
    else:
        create(**kwargs)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_chat_settings_and_how_the_call_was_served_are_recorded(
    instrumented: Telemetry, stream: bool
) -> None:
    """What tells a canary's configuration and service from production's."""
    _chat_with_settings(stream)
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.request.choice.count"] == 2
    assert attrs["gen_ai.request.stop_sequences"] == ("END",)
    assert attrs["gen_ai.request.frequency_penalty"] == 0.5
    assert attrs["gen_ai.request.presence_penalty"] == -0.25
    assert attrs["gen_ai.request.reasoning.level"] == "low"
    assert attrs["openai.request.service_tier"] == "flex"
    assert attrs["openai.response.service_tier"] == "flex"
    assert attrs["openai.response.system_fingerprint"] == "fp_test1"
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 2
    assert attrs["gen_ai.output.type"] == "json"


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_responses_settings_and_how_the_call_was_served_are_recorded(
    instrumented: Telemetry, stream: bool
) -> None:
    create = openai_client().responses.create
    kwargs = {
        "model": MODEL,
        "input": "hi",
        "reasoning": {"effort": "high"},
        "text": {"format": {"type": "text"}},
    }
    if stream:
        list(create(stream=True, service_tier="priority", **kwargs))
    else:
        create(service_tier="priority", **kwargs)
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.request.reasoning.level"] == "high"
    assert attrs["openai.request.service_tier"] == "priority"
    assert attrs["openai.response.service_tier"] == "priority"
    assert attrs["gen_ai.usage.reasoning.output_tokens"] == 0
    assert attrs["gen_ai.output.type"] == "text"


def test_embeddings_settings_are_recorded(instrumented: Telemetry) -> None:
    openai_client().embeddings.create(
        model="text-embedding-3-small", input="hi", dimensions=256, encoding_format="float"
    )
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.embeddings.dimension.count"] == 256
    assert attrs["gen_ai.request.encoding_formats"] == ("float",)


def test_a_default_call_records_no_settings_it_did_not_make(instrumented: Telemetry) -> None:
    openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, n=1)
    attrs = instrumented.one_span().attributes
    assert "gen_ai.request.choice.count" not in attrs  # 1 is the default (conventions)
    assert "openai.request.service_tier" not in attrs
    assert "gen_ai.request.reasoning.level" not in attrs
    assert attrs["openai.response.service_tier"] == "default"
