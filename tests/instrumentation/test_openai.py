"""Every wrapped OpenAI method, sync and async, streaming and not, gives one span."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import httpx2
import openai
import pytest
from genai_prices import Usage, calc_price

from tests.instrumentation.conftest import (
    REQUEST_ID,
    TEXT_CHUNKS,
    Telemetry,
    _response_object,
    _sse,
    failing_in_reply,
    openai_client,
)

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


@pytest.mark.parametrize(
    "read",
    [
        chat_stream,
        chat_stream_helper,  # passes `stream_options` as the SDK's "omitted" sentinel
        lambda c: list(
            c.chat.completions.create(
                model=MODEL,
                messages=MESSAGES,
                stream=True,
                stream_options={"include_obfuscation": False},
            )
        ),
    ],
    ids=["create", "stream-helper", "other-stream-options"],
)
def test_include_stream_usage_is_opt_in_and_gives_usage(
    telemetry: Telemetry, read: Callable[[Any], Any]
) -> None:
    from canarytrace.instrumentation import instrument, uninstrument

    instrument(tracer_provider=telemetry.provider, include_stream_usage=True)
    try:
        read(openai_client())
    finally:
        uninstrument()
    attrs = telemetry.one_span().attributes
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["gen_ai.usage.output_tokens"] == 3


def test_include_stream_usage_leaves_a_callers_own_no(telemetry: Telemetry) -> None:
    from canarytrace.instrumentation import instrument, uninstrument

    instrument(tracer_provider=telemetry.provider, include_stream_usage=True)
    try:
        chunks = list(
            openai_client().chat.completions.create(
                model=MODEL, messages=MESSAGES, stream=True, stream_options={"include_usage": False}
            )
        )
    finally:
        uninstrument()
    assert all(chunk.usage is None for chunk in chunks)
    assert "gen_ai.usage.input_tokens" not in telemetry.one_span().attributes


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


def _sse_client(chunks: list[dict[str, Any]], **client: Any) -> Any:
    """An OpenAI (or, with `azure_endpoint`, Azure OpenAI) client whose API streams `chunks`."""

    def api(request: httpx2.Request) -> httpx2.Response:
        body = _sse([(None, chunk) for chunk in chunks] + [(None, "[DONE]")])
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    http = httpx2.Client(transport=httpx2.MockTransport(api))
    if "azure_endpoint" in client:
        return openai.AzureOpenAI(api_key="k", api_version="2024-10-21", http_client=http, **client)
    return openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)


def _chunk(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {
        "id": "chatcmpl-AZ",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": MODEL,
        "system_fingerprint": "fp_az",
        "choices": choices,
        **extra,
    }


def test_an_azure_stream_led_by_its_prompt_filter_chunk_keeps_id_model_and_cost(
    instrumented: Telemetry,
) -> None:
    """Azure's first chunk reports its prompt filter, with an empty id and model: taken
    as the response's, it left the span without them and, priced by the deployment's
    name, without a cost."""
    prompt_filter = {
        "id": "",
        "object": "",
        "created": 0,
        "model": "",
        "choices": [],
        "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": {}}],
    }
    usage = {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}
    client = _sse_client(
        [
            prompt_filter,
            _chunk([{"index": 0, "delta": {"role": "assistant", "content": "Hello"}}]),
            _chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]),
            _chunk([], usage=usage),
        ],
        azure_endpoint="https://my.openai.azure.com",
    )
    list(client.chat.completions.create(model="my-deployment", messages=MESSAGES, stream=True))
    attributes = instrumented.one_span().attributes
    assert attributes["gen_ai.provider.name"] == "azure.ai.openai"
    assert attributes["gen_ai.response.id"] == "chatcmpl-AZ"
    assert attributes["gen_ai.response.model"] == MODEL
    assert attributes["openai.response.system_fingerprint"] == "fp_az"
    assert attributes["canarytrace.cost_usd"] > 0


def test_streamed_choices_are_captured_apart_as_when_not_streamed(
    with_content: Telemetry,
) -> None:
    """With n=2 the deltas of both choices interleave; joined as one, they read
    'HelloBonjour world monde'."""
    words = [(0, "Hello"), (1, "Bonjour"), (0, " world"), (1, " monde")]
    client = _sse_client(
        [_chunk([{"index": i, "delta": {"content": text}}]) for i, text in words]
        + [_chunk([{"index": i, "delta": {}, "finish_reason": "stop"} for i in (0, 1)])]
    )
    list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True, n=2))
    (answer,) = json.loads(with_content.one_span().attributes["gen_ai.output.messages"])
    assert [part["content"] for part in answer["parts"]] == ["Hello world", "Bonjour monde"]


def test_a_call_that_names_no_model_is_named_by_its_operation_alone(
    instrumented: Telemetry,
) -> None:
    """A Responses call with a stored prompt names no model: the span was 'chat None'
    with the request model "None", which routing, pricing and the metrics grouped by."""

    def api(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, json=_response_object(MODEL))

    http = httpx2.Client(transport=httpx2.MockTransport(api))
    client = openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
    client.responses.create(prompt={"id": "pmpt_123"}, input="hi")
    (span,) = [s for s in instrumented.spans() if s.name.startswith("chat")]
    assert span.name == "chat"
    assert "gen_ai.request.model" not in span.attributes
    assert "canarytrace.pinned" not in span.attributes
    assert span.attributes["gen_ai.response.model"] == MODEL
    assert span.attributes["canarytrace.cost_usd"] > 0
    (point,) = instrumented.metric_points("gen_ai.client.operation.duration")
    assert "gen_ai.request.model" not in point.attributes


@pytest.mark.parametrize("ending", ["response.failed", "error", "reply"])
def test_a_responses_call_that_fails_in_its_reply_is_an_error(
    instrumented: Telemetry, ending: str
) -> None:
    """OpenAI reports such a failure in a successful HTTP reply: the span said UNSET with
    no error.type, the judge counted the call as a success and the breaker never saw it."""
    http = httpx2.Client(transport=httpx2.MockTransport(failing_in_reply(ending)))
    client = openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
    if ending == "reply":
        assert client.responses.create(model=MODEL, input="hi").status == "failed"
    else:
        events = [e.type for e in client.responses.create(model=MODEL, input="hi", stream=True)]
        assert events == ["response.created", ending]  # the application's stream, unchanged
    span = instrumented.one_span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "server_error"
    (point,) = instrumented.metric_points("gen_ai.client.operation.duration")
    assert point.attributes["error.type"] == "server_error"


def _compaction(request: httpx2.Request) -> httpx2.Response:
    assert request.url.path.endswith("/responses/compact")
    usage = {
        "input_tokens": 1200,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 300,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 1500,
    }
    reply = {"id": "cmp_1", "created_at": 1, "object": "response.compaction", "output": []}
    return httpx2.Response(200, json={**reply, "usage": usage})


async def _async_compaction(request: httpx2.Request) -> httpx2.Response:
    return _compaction(request)


@pytest.mark.parametrize("is_async", [False, True], ids=["sync", "async"])
def test_a_compaction_is_a_call_of_its_own_with_its_tokens_and_cost(
    instrumented: Telemetry, is_async: bool
) -> None:
    """`responses.compact` runs the model and bills its tokens: untraced, that spending was
    missing from the tier's cost."""
    if is_async:
        http: Any = httpx2.AsyncClient(transport=httpx2.MockTransport(_async_compaction))
        client: Any = openai.AsyncOpenAI(
            api_key="k", base_url="https://api.test/v1", http_client=http
        )
        reply = asyncio.run(client.responses.compact(model=MODEL, input="a long chat"))
    else:
        http = httpx2.Client(transport=httpx2.MockTransport(_compaction))
        client = openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
        reply = client.responses.compact(model=MODEL, input="a long chat")
    assert reply.id == "cmp_1"  # the application's reply, unchanged
    span = instrumented.one_span()
    assert span.name == f"compact {MODEL}"
    assert span.attributes["gen_ai.operation.name"] == "compact"
    assert span.attributes["gen_ai.response.id"] == "cmp_1"
    assert span.attributes["gen_ai.usage.input_tokens"] == 1200
    assert span.attributes["gen_ai.usage.output_tokens"] == 300
    tokens = Usage(input_tokens=1200, output_tokens=300)
    expected = calc_price(tokens, MODEL, provider_id="openai").total_price
    assert span.attributes["canarytrace.cost_usd"] == pytest.approx(float(expected))
