"""In-memory telemetry, an in-process fake of the OpenAI and Anthropic APIs, and the
`instrumented` fixture (instrument, yield, uninstrument).

The fake answers through `httpx2.MockTransport`, so the real SDK clients run end to
end with no network and no simulator. A request whose model is `error-model` gets an
HTTP 400 error body.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from canarytrace import routing
from canarytrace.instrumentation import instrument, uninstrument

REGISTRY = """\
routes:
  chat:
    production: gpt-4o-2024-08-06
    canary: gpt-4o-2024-11-20
    stages: [5, 25, 50, 100]
    stage: 50
  assist:
    production: claude-3-5-sonnet-20241022
    canary: claude-sonnet-4-20250514
    stages: [5, 25, 50, 100]
    stage: 50
models:
  - {id: gpt-4o-2024-08-06, provider: openai}
  - {id: gpt-4o-2024-11-20, provider: openai}
  - {id: claude-3-5-sonnet-20241022, provider: anthropic}
  - {id: claude-sonnet-4-20250514, provider: anthropic}
"""

TEXT_CHUNKS = ["Hel", "lo", " there"]


def _sse(events: list[tuple[str | None, dict[str, Any] | str]]) -> bytes:
    out = []
    for name, data in events:
        payload = data if isinstance(data, str) else json.dumps(data)
        out.append((f"event: {name}\n" if name else "") + f"data: {payload}\n\n")
    return "".join(out).encode()


FINGERPRINT = "fp_test1"
REQUEST_ID = "req_test1"
#: The prompt the fake's models refuse (a safety classifier's decline), and what they say.
REFUSE = "Write me an exploit"
#: Refused mid-answer: the model streams some text, then its classifiers stop it.
REFUSE_LATE = "Explain this malware sample"
REFUSAL_TEXT = "I can't help with that."
#: A server-side context compaction's counts, in the usage's `iterations`, when asked for.
COMPACTION = {"input_tokens": 5000, "output_tokens": 200, "cache_read_input_tokens": 0}


def _refused(body: dict[str, Any]) -> bool:
    return any(m.get("content") in (REFUSE, REFUSE_LATE) for m in body.get("messages") or [])


def _refused_late(body: dict[str, Any]) -> bool:
    return any(m.get("content") == REFUSE_LATE for m in body.get("messages") or [])


def _served_tier(body: dict[str, Any]) -> str:
    """The service tier OpenAI answers with: the one asked for, `default` for `auto`."""
    tier = body.get("service_tier") or "auto"
    return "default" if tier == "auto" else tier


def _cache_writes(body: dict[str, Any]) -> int:
    """OpenAI's prompt-cache writes: 8 of the prompt's tokens when it names a cache key."""
    return 8 if body.get("prompt_cache_key") else 0


def _chat(body: dict[str, Any]) -> httpx2.Response:
    model = body["model"]
    usage = {
        "prompt_tokens": 12,
        "completion_tokens": 3,
        "total_tokens": 15,
        "completion_tokens_details": {"reasoning_tokens": 2 if body.get("reasoning_effort") else 0},
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": _cache_writes(body)},
    }
    served = {"service_tier": _served_tier(body), "system_fingerprint": FINGERPRINT}
    refused = _refused(body)
    text = "".join(TEXT_CHUNKS)
    answer = {"content": None, "refusal": REFUSAL_TEXT} if refused else {"content": text}
    if not body.get("stream"):
        return httpx2.Response(
            200,
            json={
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 1,
                "model": model,
                **served,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", **answer},
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            },
        )
    base = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": model}
    base.update(served)
    chunks: list[tuple[str | None, dict[str, Any] | str]] = [
        (None, {**base, "choices": [{"index": 0, "delta": {"role": "assistant"}}]})
    ]
    part, texts = ("refusal", [REFUSAL_TEXT]) if refused else ("content", TEXT_CHUNKS)
    for text in texts:
        chunks.append((None, {**base, "choices": [{"index": 0, "delta": {part: text}}]}))
    chunks.append((None, {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
    if (body.get("stream_options") or {}).get("include_usage"):
        chunks.append((None, {**base, "choices": [], "usage": usage}))
    chunks.append((None, "[DONE]"))
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=_sse(chunks))


def _web_searches(body: dict[str, Any]) -> int:
    """How many searches the fake's web search tool makes: 2 when the request offers it."""
    tools = body.get("tools") or []
    return 2 if any(str(tool.get("type", "")).startswith("web_search") for tool in tools) else 0


def _response_object(
    model: str, tier: str = "default", searches: int = 0, writes: int = 0
) -> dict[str, Any]:
    search = {"type": "search", "query": "hello"}
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1,
        "model": model,
        "service_tier": tier,
        "status": "completed",
        "output": [
            *(
                {
                    "type": "web_search_call",
                    "id": f"ws_{n}",
                    "status": "completed",
                    "action": search,
                }
                for n in range(searches)
            ),
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "".join(TEXT_CHUNKS), "annotations": []}
                ],
            },
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": 20,
            "input_tokens_details": {"cached_tokens": 5, "cache_write_tokens": writes},
            "output_tokens": 4,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 24,
        },
    }


#: The fake's background responses: how one ends and its model are in its id, after a
#: unique part, so that retrieving one needs no state. One asked `BACKGROUND_FAILS` fails
#: in the background.
BACKGROUND_ID = "resp_bg.{unique}.{fate}.{model}"
BACKGROUND_FAILS = "Fail in the background"
BACKGROUND_SECONDS = 42.5  # from created_at to completed_at


def _background(response_id: str, status: str, streamed: bool = False) -> httpx2.Response:
    """A response as retrieving (or cancelling) `response_id` finds it: `resp_1` is the
    foreground one every create answers, `resp_bg.*` a background one."""
    if response_id == "resp_1":
        return httpx2.Response(200, json=_response_object("gpt-4o-2024-11-20"))
    if not response_id.startswith("resp_bg."):
        error = {"message": "No response found.", "type": "invalid_request_error"}
        return httpx2.Response(404, json={"error": {**error, "code": None, "param": None}})
    _, _, fate, model = response_id.split(".", 3)
    body: dict[str, Any] = {**_response_object(model), "id": response_id, "background": True}
    if status == "cancelled":
        body |= {"status": "cancelled", "usage": None, "output": []}
    elif fate == "fails":
        error = {"code": "server_error", "message": "The model failed."}
        body |= {"status": "failed", "usage": None, "output": [], "error": error}
    else:
        body["completed_at"] = body["created_at"] + BACKGROUND_SECONDS
    if not streamed:
        return httpx2.Response(200, json=body)
    # Resumed: the events after the caller's cursor, here the last delta and the end.
    delta = {"type": "response.output_text.delta", "sequence_number": 4, "item_id": "msg_1"}
    delta |= {"output_index": 0, "content_index": 0, "delta": "!", "logprobs": []}
    end = f"response.{body['status']}"
    events = [(delta["type"], delta), (end, {"type": end, "sequence_number": 5, "response": body})]
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=_sse(events))


def _responses(body: dict[str, Any]) -> httpx2.Response:
    final = _response_object(
        body["model"], _served_tier(body), _web_searches(body), _cache_writes(body)
    )
    if body.get("background"):
        fate = "fails" if body.get("input") == BACKGROUND_FAILS else "ends"
        unique = uuid.uuid4().hex  # unique in the process, as the API's ids are
        final |= {"id": BACKGROUND_ID.format(unique=unique, fate=fate, **body), "background": True}
        if not body.get("stream"):
            queued = {"status": "queued", "usage": None, "output": []}
            return httpx2.Response(200, json=final | queued)
    if not body.get("stream"):
        return httpx2.Response(200, json=final)
    created = {**final, "status": "in_progress", "usage": None, "output": []}
    events: list[tuple[str | None, dict[str, Any] | str]] = [
        (
            "response.created",
            {"type": "response.created", "sequence_number": 0, "response": created},
        )
    ]
    item = {"type": "message", "id": "msg_1", "status": "in_progress", "role": "assistant"}
    part = {"type": "output_text", "text": "", "annotations": []}
    events.append(
        (
            "response.output_item.added",
            {
                "type": "response.output_item.added",
                "sequence_number": 0,
                "output_index": 0,
                "item": {**item, "content": []},
            },
        )
    )
    events.append(
        (
            "response.content_part.added",
            {
                "type": "response.content_part.added",
                "sequence_number": 0,
                "item_id": "msg_1",
                "output_index": 0,
                "content_index": 0,
                "part": part,
            },
        )
    )
    for n, text in enumerate(TEXT_CHUNKS, start=1):
        events.append(
            (
                "response.output_text.delta",
                {
                    "type": "response.output_text.delta",
                    "sequence_number": n,
                    "item_id": "msg_1",
                    "output_index": 0,
                    "content_index": 0,
                    "delta": text,
                    "logprobs": [],
                },
            )
        )
    events.append(
        (
            "response.completed",
            {"type": "response.completed", "sequence_number": 9, "response": final},
        )
    )
    return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=_sse(events))


def _embeddings(body: dict[str, Any]) -> httpx2.Response:
    return httpx2.Response(
        200,
        json={
            "object": "list",
            "model": body["model"],
            "data": [{"object": "embedding", "index": 0, "embedding": [0.5, 0.25]}],
            "usage": {"prompt_tokens": 7, "total_tokens": 7},
        },
    )


def _messages(body: dict[str, Any]) -> httpx2.Response:
    """Anthropic's reply; the usage says how the call was served, the `request-id`
    header names it."""
    model = body["model"]
    served: dict[str, Any] = {"service_tier": "standard"}
    if body.get("speed") == "fast":
        served["speed"] = "fast"
    if geo := body.get("inference_geo"):
        served["inference_geo"] = geo
    thinking = (body.get("thinking") or {}).get("type") == "enabled"
    details: dict[str, Any] = {"output_tokens_details": {"thinking_tokens": 3}} if thinking else {}
    if searches := _web_searches(body):
        details["server_tool_use"] = {"web_search_requests": searches, "web_fetch_requests": 0}
    # Cache writes, by lifetime: 300 tokens when the request asks for caching.
    ttl = (body.get("cache_control") or {}).get("ttl", "5m")
    writes = 300 if body.get("cache_control") else 0
    served["cache_creation_input_tokens"] = writes
    served["cache_creation"] = {
        "ephemeral_5m_input_tokens": writes if ttl == "5m" else 0,
        "ephemeral_1h_input_tokens": writes if ttl == "1h" else 0,
    }
    # A refused prompt: the first of the request's `fallbacks` answers it (Anthropic's
    # server-side fallback), else the answer is the refusal, with no output.
    refused = _refused(body)
    fallbacks = body.get("fallbacks") or []
    fallback = fallbacks[0]["model"] if refused and fallbacks else None
    stop = "refusal" if refused and fallback is None else "end_turn"
    why = {"type": "refusal", "category": "cyber", "explanation": REFUSAL_TEXT}
    details_of_stop = why if stop == "refusal" else None
    output = 0 if stop == "refusal" else 4
    steps = []
    if body.get("context_management"):
        steps.append({"type": "compaction", **COMPACTION, "cache_creation_input_tokens": 0})
    if fallback is not None:
        counts = {
            "input_tokens": 11,
            "cache_read_input_tokens": 0,
            "cache_creation_input_tokens": 0,
        }
        steps.append({"type": "message", "model": model, **counts, "output_tokens": 0})
        steps.append({"type": "fallback_message", "model": fallback, **counts, "output_tokens": 4})
    if steps:
        details["iterations"] = steps
    # What the refused model wrote before its classifiers stopped it, if it wrote any.
    before = [{"type": "text", "text": "".join(TEXT_CHUNKS)}] if _refused_late(body) else []
    handover = {
        "type": "fallback",
        "from": {"model": model},
        "to": {"model": fallback},
        "trigger": {"type": "refusal", "category": "cyber"},
    }
    headers = {"request-id": REQUEST_ID}
    if not body.get("stream"):
        content = [] if stop == "refusal" else [{"type": "text", "text": "".join(TEXT_CHUNKS)}]
        return httpx2.Response(
            200,
            headers=headers,
            json={
                "id": "msg_1",
                "type": "message",
                "role": "assistant",
                "model": model if fallback is None else fallback,
                "content": content if fallback is None else [*before, handover, *content],
                "stop_reason": stop,
                "stop_sequence": None,
                "stop_details": details_of_stop,
                "usage": {
                    "input_tokens": 11,
                    "output_tokens": output,
                    "cache_read_input_tokens": 100,
                    **served,
                    **details,
                },
            },
        )
    start = {
        "type": "message_start",
        "message": {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 11,
                "output_tokens": 1,
                "cache_read_input_tokens": 100,
                **served,
            },
        },
    }
    events: list[tuple[str | None, dict[str, Any] | str]] = [("message_start", start)]
    blocks = [] if stop == "refusal" else [{"type": "text"}]
    if fallback is not None:
        blocks = [*before, handover, *blocks]
    for index, block in enumerate(blocks):
        is_text = block["type"] == "text"
        opened = {"type": "text", "text": ""} if is_text else block  # the deltas bring the text
        start_block = {"type": "content_block_start", "index": index, "content_block": opened}
        events.append(("content_block_start", start_block))
        for text in TEXT_CHUNKS if is_text else ():
            delta = {"type": "content_block_delta", "index": index}
            delta["delta"] = {"type": "text_delta", "text": text}
            events.append(("content_block_delta", delta))
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events += [
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": stop,
                    "stop_sequence": None,
                    "stop_details": details_of_stop,
                },
                "usage": {"output_tokens": output, **details},
            },
        ),
        ("message_stop", {"type": "message_stop"}),
    ]
    headers["content-type"] = "text/event-stream"
    return httpx2.Response(200, headers=headers, content=_sse(events))


def reply_as(model: str, path: str) -> httpx2.Response:
    """The fake API's non-streamed reply to a request for `path`, answered by `model`:
    an OpenAI chat completion for `/chat/completions`, else an Anthropic message (the
    platforms' Anthropic paths, Bedrock's `/invoke` and Vertex's `:rawPredict`, too)."""
    answer = _chat if path.endswith("/chat/completions") else _messages
    return answer({"model": model})


def fake_api(request: httpx2.Request) -> httpx2.Response:
    """The in-process OpenAI + Anthropic API; OpenAI's replies, failures included, carry
    its `x-request-id` (Anthropic's own carry `request-id`)."""
    reply = _answer(request)
    if not request.url.path.endswith("/messages"):
        reply.headers["x-request-id"] = REQUEST_ID
    return reply


def _answer(request: httpx2.Request) -> httpx2.Response:
    path = request.url.path
    if "/responses/" in path:  # retrieve or cancel a background response
        response_id = path.split("/responses/")[1].removesuffix("/cancel")
        status = "cancelled" if path.endswith("/cancel") else ""
        return _background(response_id, status, request.url.params.get("stream") == "true")
    body = json.loads(request.content)
    if body.get("model") == "error-model":
        error = {"type": "invalid_request_error", "message": "no such model"}
        if request.url.path.endswith("/messages"):
            headers = {"request-id": REQUEST_ID}
            return httpx2.Response(400, headers=headers, json={"type": "error", "error": error})
        return httpx2.Response(400, json={"error": {**error, "code": None, "param": None}})
    for suffix, answer in (
        ("/chat/completions", _chat),
        ("/responses", _responses),
        ("/embeddings", _embeddings),
        ("/messages", _messages),
    ):
        if request.url.path.endswith(suffix):
            return answer(body)
    return httpx2.Response(404, json={"error": {"message": f"no route {request.url.path}"}})


class _DroppedStream(httpx2.SyncByteStream):
    """The first events of a stream, then the connection drops."""

    def __init__(self, head: bytes) -> None:
        self.head = head

    def __iter__(self) -> Iterator[bytes]:
        yield self.head
        raise httpx2.ReadError("connection lost")


def dropping_api(events: int) -> Callable[[httpx2.Request], httpx2.Response]:
    """The fake API, but a stream's connection drops after its first `events` events."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        whole = fake_api(request)
        if whole.headers.get("content-type") != "text/event-stream":
            return whole
        head = b"".join(event + b"\n\n" for event in whole.read().split(b"\n\n")[:events])
        return httpx2.Response(200, headers=whole.headers, stream=_DroppedStream(head))

    return answer


def failing_in_reply(
    ending: str, model: str = "gpt-4o-2024-08-06"
) -> Callable[[httpx2.Request], httpx2.Response]:
    """A Responses API that fails the call in its reply (HTTP 200): a stream ending in a
    `response.failed` or an `error` event, or (`ending` "reply") a failed response."""
    failed = {
        **_response_object(model),
        "status": "failed",
        "usage": None,
        "output": [],
        "error": {"code": "server_error", "message": "The model failed."},
    }

    def api(request: httpx2.Request) -> httpx2.Response:
        if ending == "reply":
            return httpx2.Response(200, json=failed)
        created = {**failed, "status": "in_progress", "error": None}
        events: list[tuple[str | None, dict[str, Any] | str]] = [
            (
                "response.created",
                {"type": "response.created", "sequence_number": 0, "response": created},
            )
        ]
        if ending == "response.failed":
            events.append((ending, {"type": ending, "sequence_number": 1, "response": failed}))
        else:
            error = {"type": "error", "sequence_number": 1, "code": "server_error", "message": "x"}
            events.append(("error", {**error, "param": None}))
        return httpx2.Response(
            200, headers={"content-type": "text/event-stream"}, content=_sse(events)
        )

    return api


async def _async_fake_api(request: httpx2.Request) -> httpx2.Response:
    await request.aread()
    return fake_api(request)


def openai_client(is_async: bool = False) -> Any:
    if is_async:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(_async_fake_api))
        return openai.AsyncOpenAI(
            api_key="sk-test-secret",
            base_url="https://api.test/v1",
            http_client=http,
            max_retries=0,
        )
    http_sync = httpx2.Client(transport=httpx2.MockTransport(fake_api))
    return openai.OpenAI(
        api_key="sk-test-secret",
        base_url="https://api.test/v1",
        http_client=http_sync,
        max_retries=0,
    )


def anthropic_client(is_async: bool = False, tracer_provider: Any = None) -> Any:
    # Hand anthropic's own tracing the test provider, so a native span would be seen.
    otel = {"tracer_provider": tracer_provider} if tracer_provider is not None else None
    if is_async:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(_async_fake_api))
        return anthropic.AsyncAnthropic(
            api_key="sk-ant-secret",
            base_url="https://api.test",
            http_client=http,
            max_retries=0,
            open_telemetry=otel,
        )
    http_sync = httpx2.Client(transport=httpx2.MockTransport(fake_api))
    return anthropic.Anthropic(
        api_key="sk-ant-secret",
        base_url="https://api.test",
        http_client=http_sync,
        max_retries=0,
        open_telemetry=otel,
    )


def recorded_points(reader: InMemoryMetricReader) -> Iterator[tuple[Any, Any]]:
    """(metric, data point) for every point `reader` has recorded so far."""
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    yield metric, point


@dataclass
class Telemetry:
    provider: TracerProvider
    exporter: InMemorySpanExporter
    meter_provider: MeterProvider
    metrics: InMemoryMetricReader

    def spans(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def llm_spans(self) -> list[Any]:
        """Spans that describe an LLM call (any scope): those with a request model."""
        return [s for s in self.spans() if "gen_ai.request.model" in (s.attributes or {})]

    def one_span(self) -> Any:
        spans = self.llm_spans()
        assert len(spans) == 1, [s.name for s in spans]
        return spans[0]

    def metric_points(self, name: str) -> list[Any]:
        """The data points recorded so far of the metric called `name`."""
        return [point for metric, point in recorded_points(self.metrics) if metric.name == name]


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    yield Telemetry(provider, exporter, MeterProvider(metric_readers=[reader]), reader)
    provider.shutdown()


@pytest.fixture(autouse=True)
def registry(tmp_path: Path) -> Iterator[Path]:
    """A known registry for routing, so tiers do not depend on the working directory."""
    path = tmp_path / "models.yaml"
    path.write_text(REGISTRY, encoding="utf-8")
    routing.configure(registry=path)
    yield path
    routing.reset()


@pytest.fixture
def instrumented(telemetry: Telemetry) -> Iterator[Telemetry]:
    instrument(tracer_provider=telemetry.provider, meter_provider=telemetry.meter_provider)
    yield telemetry
    uninstrument()


@pytest.fixture
def with_content(telemetry: Telemetry) -> Iterator[Telemetry]:
    instrument(
        tracer_provider=telemetry.provider,
        meter_provider=telemetry.meter_provider,
        capture_content=True,
    )
    yield telemetry
    uninstrument()
