"""Stream proxies end the call's span exactly once, however the stream ends, and the
application sees the SDK's stream unchanged."""

from __future__ import annotations

import asyncio
import gc
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from canarytrace.instrumentation import _call
from canarytrace.instrumentation.openai import ChatAccumulator
from canarytrace.instrumentation.streams import sdk_iterator
from tests.instrumentation.conftest import (
    REQUEST_ID,
    TEXT_CHUNKS,
    Telemetry,
    _sse,
    anthropic_client,
    dropping_api,
    fake_api,
    openai_client,
)

MODEL = "gpt-4o-2024-08-06"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def ended_calls(telemetry: Telemetry) -> int:
    """How many times a call was finished: one duration measurement per end."""
    return sum(point.count for point in telemetry.metric_points("gen_ai.client.operation.duration"))


def test_exhausted_stream_ends_span_once(instrumented: Telemetry) -> None:
    with openai_client().chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    ) as stream:
        chunks = list(stream)
        stream.close()
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "".join(
        TEXT_CHUNKS
    )
    span = instrumented.one_span()
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert ended_calls(instrumented) == 1


def test_stream_broken_off_after_one_chunk_and_closed_ends_span(instrumented: Telemetry) -> None:
    stream = openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    for _chunk in stream:
        break
    assert instrumented.llm_spans() == []  # still open while the stream is
    stream.close()
    span = instrumented.one_span()
    assert span.status.status_code.name == "UNSET"
    assert span.attributes["gen_ai.response.id"] == "chatcmpl-1"
    assert span.attributes["openai.request.id"] == REQUEST_ID  # from the stream's headers
    assert ended_calls(instrumented) == 1


def test_responses_stream_closed_unread_keeps_its_request_id(instrumented: Telemetry) -> None:
    """The Responses stream's reader takes the API's `Response` from its events: a stream
    closed before any still names the request that support would ask about."""
    openai_client().responses.create(model=MODEL, input="Say hello", stream=True).close()
    attributes = instrumented.one_span().attributes
    assert "gen_ai.response.id" not in attributes
    assert attributes["openai.request.id"] == REQUEST_ID


def test_stream_broken_off_and_dropped_ends_span_when_collected(instrumented: Telemetry) -> None:
    def read_one() -> None:
        stream = anthropic_client().messages.create(
            model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES, stream=True
        )
        next(iter(stream))

    read_one()
    gc.collect()
    assert instrumented.one_span().attributes["gen_ai.response.id"] == "msg_1"
    assert ended_calls(instrumented) == 1


def test_unconsumed_stream_ends_span_when_collected(instrumented: Telemetry) -> None:
    openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    gc.collect()
    assert len(instrumented.llm_spans()) == 1
    assert ended_calls(instrumented) == 1


def test_async_stream_broken_off_ends_span(instrumented: Telemetry) -> None:
    async def main() -> None:
        client = openai_client(is_async=True)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async for _chunk in stream:
            break
        await stream.close()

    asyncio.run(main())
    assert instrumented.one_span().attributes["gen_ai.request.stream"] is True
    assert ended_calls(instrumented) == 1


def _leave_chat_helper(client: Any, telemetry: Telemetry) -> None:
    with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        for _event in stream:
            break
    telemetry.one_span()  # ended on leaving `with`, the helper still alive


def _close_responses_helper(client: Any, telemetry: Telemetry) -> None:
    stream = client.responses.stream(model=MODEL, input="Say hello").__enter__()
    for _event in stream:
        break
    stream.close()
    telemetry.one_span()


async def _aleave_chat_helper(client: Any, telemetry: Telemetry) -> None:
    async with client.chat.completions.stream(model=MODEL, messages=MESSAGES) as stream:
        async for _event in stream:
            break
    telemetry.one_span()  # before the loop's end finalizes the async generators


async def _aclose_responses_helper(client: Any, telemetry: Telemetry) -> None:
    stream = await client.responses.stream(model=MODEL, input="Say hello").__aenter__()
    async for _event in stream:
        break
    await stream.close()
    telemetry.one_span()


@pytest.mark.parametrize(
    "leave",
    [_leave_chat_helper, _close_responses_helper, _aleave_chat_helper, _aclose_responses_helper],
)
def test_a_stream_helper_left_early_ends_its_span_then_not_at_collection(
    instrumented: Telemetry, leave: Any
) -> None:
    """The `stream()` helpers close the HTTP response past the stream proxy, and hold
    their own reference cycle: the span stayed open until the collector ran."""
    gc.disable()  # what a busy application may not do for a long time
    try:
        if asyncio.iscoroutinefunction(leave):
            asyncio.run(leave(openai_client(is_async=True), instrumented))
        else:
            leave(openai_client(), instrumented)
    finally:
        gc.enable()
    gc.collect()
    assert instrumented.one_span().attributes["gen_ai.request.model"] == MODEL
    assert ended_calls(instrumented) == 1


def _stream_openai() -> None:
    list(openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))


def _stream_anthropic() -> None:
    with anthropic_client().messages.stream(
        model="claude-sonnet-4-6", max_tokens=16, messages=MESSAGES
    ) as stream:
        stream.until_done()


def _stream_openai_async() -> None:
    async def main() -> None:
        client = openai_client(is_async=True)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        async for _chunk in stream:
            pass

    asyncio.run(main())


@pytest.mark.parametrize("read", [_stream_openai, _stream_anthropic, _stream_openai_async])
def test_a_stream_records_its_time_to_first_chunk_metric(
    instrumented: Telemetry, read: Any
) -> None:
    read()
    span = instrumented.one_span()
    (point,) = instrumented.metric_points("gen_ai.client.operation.time_to_first_chunk")
    assert point.count == 1
    assert point.sum == pytest.approx(span.attributes["gen_ai.response.time_to_first_chunk"])
    assert point.attributes["gen_ai.request.model"] == span.attributes["gen_ai.request.model"]
    assert point.attributes["gen_ai.response.model"] == span.attributes["gen_ai.response.model"]
    (duration,) = instrumented.metric_points("gen_ai.client.operation.duration")
    assert point.attributes == duration.attributes
    assert 0 < point.sum <= duration.sum


def test_a_call_that_does_not_stream_records_no_time_to_first_chunk(
    instrumented: Telemetry,
) -> None:
    openai_client().chat.completions.create(model=MODEL, messages=MESSAGES)
    assert instrumented.metric_points("gen_ai.client.operation.duration")
    assert instrumented.metric_points("gen_ai.client.operation.time_to_first_chunk") == []


def _broken_client() -> openai.OpenAI:
    http = httpx2.Client(transport=httpx2.MockTransport(dropping_api(events=1)))
    return openai.OpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)


def _read_broken_stream() -> tuple[list[Any], BaseException]:
    chunks = []
    stream = _broken_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(Exception) as raised:
        for chunk in stream:
            chunks.append(chunk)
    return chunks, raised.value


def test_stream_that_raises_ends_span_with_error_and_reraises(telemetry: Telemetry) -> None:
    from canarytrace.instrumentation import instrument, uninstrument

    plain_chunks, plain_error = _read_broken_stream()
    instrument(tracer_provider=telemetry.provider, meter_provider=telemetry.meter_provider)
    try:
        chunks, error = _read_broken_stream()
    finally:
        uninstrument()
    assert type(error) is type(plain_error)
    assert str(error) == str(plain_error)
    assert len(chunks) == len(plain_chunks) == 1
    span = telemetry.one_span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == type(error).__qualname__
    assert ended_calls(telemetry) == 1


def test_user_exception_inside_the_loop_propagates(instrumented: Telemetry) -> None:
    class Stop(Exception):
        pass

    stream = openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    with pytest.raises(Stop), stream:
        for _chunk in stream:
            raise Stop
    assert len(instrumented.llm_spans()) == 1
    assert ended_calls(instrumented) == 1


def test_proxy_keeps_the_sdk_stream_api(instrumented: Telemetry) -> None:
    stream = openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert isinstance(stream, openai.Stream)
    assert stream.response.status_code == 200
    stream.close()


def test_errors_in_canarytrace_stream_hooks_are_swallowed(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: Any, chunk: Any) -> None:
        raise RuntimeError("bug in canarytrace")

    monkeypatch.setattr(ChatAccumulator, "process", broken)
    monkeypatch.setattr(_call, "_reported", set())
    with caplog.at_level("DEBUG", logger="canarytrace.instrumentation"):
        for _ in range(2):
            chunks = list(
                openai_client().chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
            )
            assert len(chunks) == len(TEXT_CHUNKS) + 2
    site = [r for r in caplog.records if "stream.process" in r.getMessage()]
    # Logged once per call site as a warning, then at debug level only.
    assert [r.levelname for r in site][:2] == ["WARNING", "DEBUG"]
    assert sum(r.levelname == "WARNING" for r in site) == 1
    assert len(instrumented.llm_spans()) == 2


def _anthropic_stream() -> Any:
    return anthropic_client().messages.create(
        model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES, stream=True
    )


def test_iterator_outliving_its_stream_still_reads_the_whole_stream(
    instrumented: Telemetry,
) -> None:
    # The proxy is dropped at once; only the iterator it returned is kept and read later.
    events = iter(_anthropic_stream())
    gc.collect()
    assert instrumented.llm_spans() == []
    kinds = [event.type for event in events]
    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    span = instrumented.one_span()
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert ended_calls(instrumented) == 1


def test_iterator_dropped_before_its_first_event_ends_span(instrumented: Telemetry) -> None:
    iter(_anthropic_stream())
    gc.collect()
    assert instrumented.one_span().status.status_code.name == "UNSET"
    assert ended_calls(instrumented) == 1


def test_next_and_for_share_one_pass_over_the_stream(instrumented: Telemetry) -> None:
    stream = _anthropic_stream()
    first = next(stream)
    rest = [event.type for event in stream]
    assert first.type == "message_start"
    assert "message_start" not in rest and rest[-1] == "message_stop"
    with pytest.raises(StopIteration):
        next(stream)
    assert instrumented.one_span().attributes["gen_ai.response.id"] == "msg_1"
    assert ended_calls(instrumented) == 1


@pytest.mark.parametrize("provider", ["anthropic", "openai responses"])
def test_text_events_after_the_first_token_are_still_read_when_content_is_captured(
    with_content: Telemetry, provider: str
) -> None:
    # Without capture, sync streams skip reading text deltas after the first token; with
    # it, every delta must reach the recorded answer.
    if provider == "anthropic":
        list(_anthropic_stream())
    else:
        list(openai_client().responses.create(model=MODEL, input="Say hello", stream=True))
    span = with_content.one_span()
    (answer,) = json.loads(span.attributes["gen_ai.output.messages"])
    assert answer["parts"] == [{"type": "text", "content": "".join(TEXT_CHUNKS)}]
    assert span.attributes["gen_ai.usage.output_tokens"] > 0


def _choice(index: int, content: str | None = None, finish: str | None = None) -> Any:
    delta = {"content": content} if content else {}
    return {"index": index, "delta": delta, "finish_reason": finish}


def _chat_stream_transport(chunks: list[dict[str, Any]]) -> httpx2.MockTransport:
    """A transport that answers every request with `chunks` as an OpenAI chat stream
    (for sync and async clients alike)."""
    body = _sse([(None, chunk) for chunk in chunks] + [(None, "[DONE]")])

    def handler(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    return httpx2.MockTransport(handler)


def _read_chat_stream(chunks: list[dict[str, Any]]) -> None:
    """Stream `chunks` (two choices) through a real OpenAI client and read them all."""
    client = openai.OpenAI(
        api_key="sk-test",
        base_url="https://api.test/v1",
        http_client=httpx2.Client(transport=_chat_stream_transport(chunks)),
    )
    stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, n=2, stream=True)
    assert len(list(stream)) == len(chunks)


def test_chat_chunks_after_the_first_token_still_give_every_ending_and_the_usage(
    instrumented: Telemetry,
) -> None:
    # Past the first token only endings and usage are read: two choices that end on later,
    # separate chunks must both be recorded, in order, and the usage of the last chunk too.
    base = {"id": "chatcmpl-2", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    chunks = [
        {**base, "choices": [_choice(0, "Hi"), _choice(1, "Yo")]},
        {**base, "choices": [_choice(0, " there")]},
        {**base, "choices": [_choice(1, finish="length")]},
        {**base, "choices": [_choice(0, finish="stop")]},
        {**base, "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 5}},
    ]
    _read_chat_stream(chunks)
    attributes = instrumented.one_span().attributes
    assert attributes["gen_ai.response.finish_reasons"] == ("length", "stop")
    assert attributes["gen_ai.usage.input_tokens"] == 7
    assert attributes["gen_ai.usage.output_tokens"] == 5
    assert attributes["canarytrace.time_to_first_token_ms"] > 0


def test_chat_chunks_after_the_first_token_are_picked_by_any_choice_ending(
    instrumented: Telemetry,
) -> None:
    # The reader hands a late chunk over when any of its choices ends (not only the first),
    # and then every ending in that chunk counts, and the usage it carries.
    base = {"id": "chatcmpl-3", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    chunks = [
        {**base, "choices": [_choice(0, "Hi"), _choice(1, "Yo")]},
        {**base, "choices": [_choice(0, " there"), _choice(1, finish="length")]},
        {
            **base,
            "choices": [_choice(0, finish="stop")],
            "usage": {"prompt_tokens": 9, "completion_tokens": 4},
        },
    ]
    _read_chat_stream(chunks)
    attributes = instrumented.one_span().attributes
    assert attributes["gen_ai.response.finish_reasons"] == ("length", "stop")
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["gen_ai.usage.output_tokens"] == 4


def _counting_on_every_chunk(chunk_id: str) -> list[dict[str, Any]]:
    """Chunks of a provider that reports the usage so far on every chunk (vLLM's
    `continuous_usage_stats`, for one): the ending's is the whole call's."""
    base = {"id": chunk_id, "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    texts = ["Hi", " there", " you", ""]
    return [
        {
            **base,
            "choices": [_choice(0, text or None, "stop" if n == len(texts) - 1 else None)],
            "usage": {"prompt_tokens": 9, "completion_tokens": n + 1},
        }
        for n, text in enumerate(texts)
    ]


def test_chat_usage_counted_on_every_chunk_is_taken_from_the_ending(
    instrumented: Telemetry,
) -> None:
    # Past the first token, chunks that neither end a choice nor lack choices are not
    # read: their usage is a count so far, which the ending's replaces.
    _read_chat_stream(_counting_on_every_chunk("chatcmpl-5"))
    attributes = instrumented.one_span().attributes
    assert attributes["gen_ai.response.finish_reasons"] == ("stop",)
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["gen_ai.usage.output_tokens"] == 4


# --- async streams: the same async generator design as sync ones -----------------------


def _async_anthropic_stream() -> Any:
    return anthropic_client(is_async=True).messages.create(
        model="claude-3-5-sonnet-20241022", max_tokens=10, messages=MESSAGES, stream=True
    )


def test_async_stream_read_half_and_dropped_ends_span(instrumented: Telemetry) -> None:
    async def main() -> None:
        stream = await _async_anthropic_stream()
        events = stream.__aiter__()
        await events.__anext__()
        del stream, events
        gc.collect()
        await asyncio.sleep(0)  # the loop's async generator finalizer closes it

    asyncio.run(main())
    assert instrumented.one_span().attributes["gen_ai.response.id"] == "msg_1"
    assert ended_calls(instrumented) == 1


def test_async_next_and_async_for_share_one_pass_over_the_stream(
    instrumented: Telemetry,
) -> None:
    async def main() -> tuple[Any, list[str]]:
        stream = await _async_anthropic_stream()
        first = await stream.__anext__()
        rest = [event.type async for event in stream]
        with pytest.raises(StopAsyncIteration):
            await stream.__anext__()
        return first, rest

    first, rest = asyncio.run(main())
    assert first.type == "message_start"
    assert "message_start" not in rest and rest[-1] == "message_stop"
    span = instrumented.one_span()
    assert span.attributes["gen_ai.response.finish_reasons"] == ("end_turn",)
    assert span.attributes["gen_ai.usage.output_tokens"] > 0
    assert ended_calls(instrumented) == 1


class _BrokenAsyncStream(httpx2.AsyncByteStream):
    """The first event, then the connection drops."""

    def __init__(self, first: bytes) -> None:
        self.first = first

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx2.ReadError("connection lost")


async def _broken_async_api(request: httpx2.Request) -> httpx2.Response:
    complete = fake_api(request).read()
    first = complete.split(b"\n\n")[0] + b"\n\n"
    return httpx2.Response(
        200, headers={"content-type": "text/event-stream"}, stream=_BrokenAsyncStream(first)
    )


def test_async_stream_that_raises_ends_span_with_error_and_reraises(
    instrumented: Telemetry,
) -> None:
    async def main() -> list[Any]:
        http = httpx2.AsyncClient(transport=httpx2.MockTransport(_broken_async_api))
        client = openai.AsyncOpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        chunks = []
        with pytest.raises(openai.APIConnectionError):  # the SDK wraps the ReadError
            async for chunk in stream:
                chunks.append(chunk)
        return chunks

    assert len(asyncio.run(main())) == 1
    span = instrumented.one_span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "APIConnectionError"
    assert ended_calls(instrumented) == 1


def test_async_chat_chunks_after_the_first_token_give_every_ending_and_the_usage(
    instrumented: Telemetry,
) -> None:
    base = {"id": "chatcmpl-4", "object": "chat.completion.chunk", "created": 1, "model": MODEL}
    chunks = [
        {**base, "choices": [_choice(0, "Hi"), _choice(1, "Yo")]},
        {**base, "choices": [_choice(0, " there"), _choice(1, finish="length")]},
        {**base, "choices": [_choice(0, finish="stop")]},
        {**base, "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 4}},
    ]

    async def main() -> int:
        http = httpx2.AsyncClient(transport=_chat_stream_transport(chunks))
        client = openai.AsyncOpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
        stream = await client.chat.completions.create(
            model=MODEL, messages=MESSAGES, n=2, stream=True
        )
        return len([chunk async for chunk in stream])

    assert asyncio.run(main()) == len(chunks)
    attributes = instrumented.one_span().attributes
    assert attributes["gen_ai.response.finish_reasons"] == ("length", "stop")
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["gen_ai.usage.output_tokens"] == 4
    assert attributes["canarytrace.time_to_first_token_ms"] > 0


def test_async_chat_usage_counted_on_every_chunk_is_taken_from_the_ending(
    instrumented: Telemetry,
) -> None:
    chunks = _counting_on_every_chunk("chatcmpl-6")

    async def main() -> int:
        http = httpx2.AsyncClient(transport=_chat_stream_transport(chunks))
        client = openai.AsyncOpenAI(api_key="k", base_url="https://api.test/v1", http_client=http)
        stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        return len([chunk async for chunk in stream])

    assert asyncio.run(main()) == len(chunks)
    attributes = instrumented.one_span().attributes
    assert attributes["gen_ai.usage.input_tokens"] == 9
    assert attributes["gen_ai.usage.output_tokens"] == 4


# --- the SDK's own iterator, read directly when its iteration only hands items on ---------


def _openai_stream(is_async: bool = False) -> Any:
    return openai_client(is_async=is_async).chat.completions.create(
        model=MODEL, messages=MESSAGES, stream=True
    )


def test_the_installed_sdks_streams_are_read_from_their_own_iterator() -> None:
    # The proxies skip the SDK's pass-on `__iter__`/`__aiter__` step; this fails when an
    # SDK release changes that method, so the saving is not lost unnoticed.
    async def async_streams_recognised() -> list[bool]:
        recognised = []
        for stream in [await _openai_stream(is_async=True), await _async_anthropic_stream()]:
            recognised.append(sdk_iterator(stream, "__aiter__") is stream._iterator)
            await stream.close()
        return recognised

    for stream in [_openai_stream(), _anthropic_stream()]:
        assert sdk_iterator(stream, "__iter__") is stream._iterator
        stream.close()
    assert asyncio.run(async_streams_recognised()) == [True, True]


class _Seen:
    """A stand-in for anthropic's native-tracing observer (`StreamObserver`): keeps the
    items it is told of and how the stream ended."""

    def __init__(self) -> None:
        self.items: list[Any] = []
        self.ends: list[str] = []

    def begin(self) -> None:
        pass

    def item(self, item: Any) -> None:
        self.items.append(item)

    def end(self, how: str, error: BaseException | None = None) -> None:
        self.ends.append(how)


def test_a_stream_whose_iteration_does_more_keeps_it(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen()

    def iterate_and_tell(self: Any) -> Iterator[Any]:
        for item in self._iterator:
            seen.item(item)
            yield item

    list(_openai_stream())  # read once, so the SDK's own method is judged before the patch
    monkeypatch.setattr(openai.Stream, "__iter__", iterate_and_tell)
    chunks = list(_openai_stream())
    assert chunks and seen.items == chunks
    assert instrumented.llm_spans()[-1].attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_an_anthropic_stream_with_an_observer_still_tells_it_every_event(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen()
    monkeypatch.setattr(anthropic.Stream, "_observer", property(lambda self: seen))
    events = list(_anthropic_stream())
    assert events and seen.items == events and seen.ends == ["read"]
    assert instrumented.one_span().attributes["gen_ai.response.finish_reasons"] == ("end_turn",)


def test_an_async_stream_whose_iteration_does_more_keeps_it(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _Seen()

    async def iterate_and_tell(self: Any) -> AsyncIterator[Any]:
        async for item in self._iterator:
            seen.item(item)
            yield item

    monkeypatch.setattr(openai.AsyncStream, "__aiter__", iterate_and_tell)

    async def main() -> list[Any]:
        return [chunk async for chunk in await _openai_stream(is_async=True)]

    chunks = asyncio.run(main())
    assert chunks and seen.items == chunks
    assert instrumented.one_span().attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_an_anthropic_streams_first_token_is_its_answers_not_its_thinking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Extended thinking streams before the answer: the first token is the answer's (a
    text or a tool call's input), as OpenAI's readers take it."""
    from types import SimpleNamespace

    from canarytrace.instrumentation import anthropic as reader

    monkeypatch.setattr(reader, "time", SimpleNamespace(perf_counter=lambda: 42.0))

    def delta(kind: str) -> SimpleNamespace:
        return SimpleNamespace(type="content_block_delta", delta=SimpleNamespace(type=kind))

    for first_answer in ("text_delta", "input_json_delta"):
        acc = reader.AnthropicAccumulator(capture=False)
        acc.process(delta("thinking_delta"))
        acc.process(delta("signature_delta"))
        assert acc.first_token is None
        acc.process(delta(first_answer))
        assert acc.first_token == 42.0
