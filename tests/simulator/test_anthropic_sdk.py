"""Anthropic Messages through the real anthropic SDK: sync, async, streaming, caching."""

from __future__ import annotations

import json

import anthropic
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from canarytrace.simulator import Simulator, count_tokens
from canarytrace.simulator.anthropic_api import CACHE_MIN_TOKENS

PASSWORD = "How do I reset my password?"
MODEL = "claude-3-5-sonnet-20241022"


def ask(prompt: str) -> list[anthropic.types.MessageParam]:
    return [{"role": "user", "content": prompt}]


def test_message_is_fully_parsed(ant: anthropic.Anthropic, simulator: Simulator) -> None:
    raw = ant.messages.with_raw_response.create(model=MODEL, max_tokens=200, messages=ask(PASSWORD))
    Message.model_validate(json.loads(raw.http_response.text))
    assert raw.headers["request-id"].startswith("req_")
    reply = raw.parse()
    assert reply.id.startswith("msg_01")
    assert len(reply.id) == len("msg_01") + 22
    assert (reply.type, reply.role, reply.model) == ("message", "assistant", MODEL)
    assert reply.stop_reason == "end_turn"
    assert reply.stop_sequence is None
    text = reply.content[0].text  # type: ignore[union-attr]
    assert simulator.answer_is_correct(PASSWORD, text) is not None
    usage = reply.usage
    assert usage.output_tokens == count_tokens(text)
    assert usage.input_tokens > count_tokens(PASSWORD)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (0, 0)


def test_max_tokens_stop_reason(ant: anthropic.Anthropic) -> None:
    reply = ant.messages.create(model=MODEL, max_tokens=4, messages=ask("Tell me a story."))
    assert reply.stop_reason == "max_tokens"
    assert reply.usage.output_tokens == 4


def test_stream_sends_the_event_sequence(ant: anthropic.Anthropic) -> None:
    events = list(
        ant.messages.create(model=MODEL, max_tokens=200, messages=ask(PASSWORD), stream=True)
    )
    adapter: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump())
    types = [e.type for e in events]
    deltas = types.count("content_block_delta")
    assert deltas > 0
    assert types == [
        "message_start",  # the SDK drops the ping that follows it
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.message.model == MODEL  # type: ignore[union-attr]
    assert start.message.usage.output_tokens == 1  # type: ignore[union-attr]
    assert delta.delta.stop_reason == "end_turn"  # type: ignore[union-attr]
    assert delta.usage.output_tokens == deltas  # type: ignore[union-attr]
    assert delta.usage.cache_read_input_tokens == 0  # type: ignore[union-attr]


def test_stream_helper_accumulates_the_message(ant: anthropic.Anthropic) -> None:
    with ant.messages.stream(
        model="claude-3-opus-latest", max_tokens=200, messages=ask(PASSWORD)
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.model == "claude-3-opus-20240229"
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert final.usage.output_tokens == count_tokens(text)
    assert final.stop_reason == "end_turn"


@pytest.mark.anyio
async def test_async_create_and_stream(aant: anthropic.AsyncAnthropic) -> None:
    reply = await aant.messages.create(model=MODEL, max_tokens=50, messages=ask(PASSWORD))
    assert reply.model == MODEL
    async with aant.messages.stream(model=MODEL, max_tokens=50, messages=ask(PASSWORD)) as stream:
        final = await stream.get_final_message()
    assert final.usage.output_tokens > 0
    assert final.id.startswith("msg_01")


def test_system_prompt_and_prompt_caching(ant: anthropic.Anthropic) -> None:
    manual = "Our refund policy. " * (CACHE_MIN_TOKENS // 3)
    system: list[anthropic.types.TextBlockParam] = [
        {"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}
    ]
    first = ant.messages.create(model=MODEL, max_tokens=50, system=system, messages=ask(PASSWORD))
    second = ant.messages.create(model=MODEL, max_tokens=50, system=system, messages=ask("Hi"))
    cached = count_tokens(manual)
    assert cached >= CACHE_MIN_TOKENS
    assert first.usage.cache_creation_input_tokens == cached
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == cached
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens < first.usage.input_tokens + count_tokens("Hi")


def test_short_prefixes_are_not_cached(ant: anthropic.Anthropic) -> None:
    system: list[anthropic.types.TextBlockParam] = [
        {"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}
    ]
    for _ in range(2):
        reply = ant.messages.create(model=MODEL, max_tokens=50, system=system, messages=ask("Hi"))
        assert reply.usage.cache_creation_input_tokens == 0
        assert reply.usage.cache_read_input_tokens == 0


def test_stop_sequence_ends_the_answer_before_it(ant: anthropic.Anthropic) -> None:
    reply = ant.messages.create(
        model=MODEL, max_tokens=200, messages=ask(PASSWORD), stop_sequences=["###", "."]
    )
    assert (reply.stop_reason, reply.stop_sequence) == ("stop_sequence", ".")
    text = reply.content[0].text  # type: ignore[union-attr]
    assert "." not in text
    assert reply.usage.output_tokens == count_tokens(text)
    events = list(
        ant.messages.create(
            model=MODEL, max_tokens=200, messages=ask(PASSWORD), stop_sequences=["."], stream=True
        )
    )
    delta = events[-2]
    assert delta.delta.stop_reason == "stop_sequence"  # type: ignore[union-attr]
    assert delta.delta.stop_sequence == "."  # type: ignore[union-attr]


def test_models_list_and_retrieve(ant: anthropic.Anthropic) -> None:
    models = list(ant.models.list())
    ids = [m.id for m in models]
    assert {"claude-3-5-sonnet-20241022", "claude-3-opus-20241219"} <= set(ids)
    assert "claude-2.1" not in ids  # retired
    assert "gpt-4o-2024-11-20" not in ids
    sonnet = ant.models.retrieve("claude-3-5-sonnet-latest")
    assert (sonnet.id, sonnet.display_name) == ("claude-3-5-sonnet-20241022", "Claude 3.5 Sonnet")
    assert (sonnet.type, sonnet.lifecycle) == ("model", "active")
    assert sonnet.created_at.year == 2024
    with pytest.raises(anthropic.NotFoundError):
        ant.models.retrieve("claude-2.1")
