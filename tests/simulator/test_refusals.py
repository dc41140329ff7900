"""Classifier refusals and Anthropic's server-side fallback, through the real SDK clients."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import openai
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from anthropic.types.beta import (
    BetaFallbackBlock,
    BetaFallbackMessageIterationUsage,
    BetaMessage,
    BetaMessageIterationUsage,
    BetaRawMessageStreamEvent,
    BetaTextBlock,
)
from openai.types.chat import ChatCompletion, ChatCompletionChunk
from openai.types.responses import Response, ResponseOutputRefusal, ResponseStreamEvent
from pydantic import TypeAdapter

from canarytrace.simulator import Simulator, count_tokens, load_profiles
from canarytrace.simulator.anthropic_api import messages
from canarytrace.simulator.engine import Engine
from canarytrace.simulator.errors import SimulatedError
from canarytrace.simulator.openai_api import REFUSAL_TEXT
from canarytrace.simulator.profiles import ErrorRates, Profiles
from canarytrace.simulator.wire import JsonReply

FABLE = "claude-fable-5"
SONNET = "claude-3-7-sonnet-20250219"
GPT = "gpt-4o-2024-11-20"
BETA = "server-side-fallback-2026-07-01"
CATEGORIES = {"cyber", "bio", "general_harms"}
HELLO: Any = [{"role": "user", "content": "Hello"}]  # a param of both SDKs' (beta) calls
OAI_HELLO = HELLO


def _profiles(refusals: dict[str, float], errors: dict[str, ErrorRates] | None = None) -> Profiles:
    """The shipped profiles with these models' refusal and error rates (no errors if not given)."""
    base = load_profiles()
    errors = errors or {}
    models = dict(base.models)
    for model_id in refusals.keys() | errors.keys():
        profile = models[model_id]
        models[model_id] = profile.model_copy(
            update={
                "refusal_rate": refusals.get(model_id, profile.refusal_rate),
                "errors": errors.get(model_id, ErrorRates()),
            }
        )
    return base.model_copy(update={"models": models})


@pytest.fixture
def declining() -> Iterator[Simulator]:
    """Fable and one GPT model decline everything; 3.7 Sonnet always answers."""
    with Simulator(_profiles({FABLE: 1.0, GPT: 1.0, SONNET: 0.0}), time_scale=0) as sim:
        yield sim


@pytest.fixture
def dant(declining: Simulator) -> Iterator[anthropic.Anthropic]:
    base = declining.anthropic_base_url
    with anthropic.Anthropic(base_url=base, api_key="k", max_retries=0) as client:
        yield client


@pytest.fixture
def doai(declining: Simulator) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=declining.openai_base_url, api_key="k", max_retries=0) as client:
        yield client


# --- Anthropic refusals ---------------------------------------------------------------


def _assert_refusal(reply: Message | BetaMessage, model: str = FABLE) -> None:
    assert reply.model == model
    assert reply.stop_reason == "refusal"
    assert reply.content == []
    assert reply.stop_details is not None
    assert reply.stop_details.type == "refusal"
    assert reply.stop_details.category in CATEGORIES
    assert reply.stop_details.explanation
    assert reply.usage.output_tokens == 0
    assert reply.usage.input_tokens > count_tokens("Hello")


def test_anthropic_refusal(dant: anthropic.Anthropic) -> None:
    raw = dant.messages.with_raw_response.create(model=FABLE, max_tokens=50, messages=HELLO)
    Message.model_validate(json.loads(raw.http_response.text))
    _assert_refusal(raw.parse())
    beta = dant.beta.messages.create(model=FABLE, max_tokens=50, messages=HELLO)
    _assert_refusal(beta)
    assert beta.usage.iterations is None  # no fallback asked for


def test_anthropic_refusal_stream(dant: anthropic.Anthropic) -> None:
    events = list(dant.messages.create(model=FABLE, max_tokens=50, messages=HELLO, stream=True))
    adapter: TypeAdapter[RawMessageStreamEvent] = TypeAdapter(RawMessageStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump())
    assert [e.type for e in events] == ["message_start", "message_delta", "message_stop"]
    delta = events[1]
    assert delta.type == "message_delta"
    assert (delta.delta.stop_reason, delta.delta.stop_sequence) == ("refusal", None)
    assert delta.delta.stop_details is not None
    assert delta.delta.stop_details.category in CATEGORIES
    assert delta.usage.output_tokens == 0
    with dant.beta.messages.stream(model=FABLE, max_tokens=50, messages=HELLO) as stream:
        final = stream.get_final_message()
    _assert_refusal(final)


@pytest.mark.anyio
async def test_anthropic_refusal_async(declining: Simulator) -> None:
    base = declining.anthropic_base_url
    async with anthropic.AsyncAnthropic(base_url=base, api_key="k", max_retries=0) as client:
        _assert_refusal(await client.messages.create(model=FABLE, max_tokens=50, messages=HELLO))
        async with client.messages.stream(model=FABLE, max_tokens=50, messages=HELLO) as stream:
            _assert_refusal(await stream.get_final_message())


# --- Anthropic server-side fallback ----------------------------------------------------


def test_fallback_answers_with_typed_block_and_iterations(dant: anthropic.Anthropic) -> None:
    raw = dant.beta.messages.with_raw_response.create(
        model=FABLE,
        max_tokens=200,
        messages=HELLO,
        fallbacks=[{"model": "claude-3-7-sonnet-latest"}],
        betas=[BETA],
    )
    BetaMessage.model_validate(json.loads(raw.http_response.text))
    reply = raw.parse()
    assert reply.model == SONNET
    assert reply.stop_reason == "end_turn"
    assert reply.stop_details is None
    block, text = reply.content
    assert isinstance(block, BetaFallbackBlock)
    assert reply.content[0].type == "fallback"
    assert (block.from_.model, block.to.model) == (FABLE, SONNET)
    assert block.trigger.type == "refusal"
    assert block.trigger.category in CATEGORIES
    assert isinstance(text, BetaTextBlock)
    assert text.text
    usage = reply.usage
    assert usage.iterations is not None
    declined, served = usage.iterations
    assert isinstance(declined, BetaMessageIterationUsage)
    assert isinstance(served, BetaFallbackMessageIterationUsage)
    assert usage.iterations[1].type == "fallback_message"
    assert (declined.type, declined.model, declined.output_tokens) == ("message", FABLE, 0)
    assert declined.input_tokens == usage.input_tokens > 0
    assert (declined.cache_read_input_tokens, declined.cache_creation_input_tokens) == (0, 0)
    assert served.model == SONNET
    assert served.output_tokens == usage.output_tokens == count_tokens(text.text)
    assert served.input_tokens == usage.input_tokens


def test_fallback_stream_starts_as_requested_and_ends_as_served(dant: anthropic.Anthropic) -> None:
    events = list(
        dant.beta.messages.create(
            model=FABLE,
            max_tokens=200,
            messages=HELLO,
            fallbacks=[{"model": SONNET}],
            betas=[BETA],
            stream=True,
        )
    )
    adapter: TypeAdapter[BetaRawMessageStreamEvent] = TypeAdapter(BetaRawMessageStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump(by_alias=True))
    types = [e.type for e in events]
    deltas = types.count("content_block_delta")
    assert deltas > 0
    assert types == [
        "message_start",
        "content_block_start",
        "content_block_stop",
        "content_block_start",
        *["content_block_delta"] * deltas,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, block, text = events[0], events[1], events[3]
    assert start.type == "message_start"
    assert start.message.model == FABLE
    assert block.type == "content_block_start"
    assert block.index == 0
    assert isinstance(block.content_block, BetaFallbackBlock)
    assert block.content_block.to.model == SONNET
    assert text.type == "content_block_start"
    assert (text.index, text.content_block.type) == (1, "text")
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.iterations is not None
    assert [i.type for i in delta.usage.iterations] == ["message", "fallback_message"]
    assert delta.usage.iterations[1].output_tokens == deltas == delta.usage.output_tokens


def test_stream_helper_relabels_the_model_from_the_fallback_block(
    dant: anthropic.Anthropic,
) -> None:
    with dant.beta.messages.stream(
        model=FABLE, max_tokens=200, messages=HELLO, fallbacks="default", betas=[BETA]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert final.model == SONNET  # "default": Fable's predecessor
    assert [b.type for b in final.content] == ["fallback", "text"]
    assert final.content[1].text == text  # type: ignore[union-attr]
    assert final.usage.iterations is not None
    assert final.usage.iterations[1].type == "fallback_message"
    assert final.usage.output_tokens == count_tokens(text)


def test_default_fallback_is_the_predecessor(declining: Simulator) -> None:
    engine = declining.engine
    assert engine.predecessor(FABLE) == SONNET
    assert engine.predecessor("claude-3-5-sonnet-20241022") == "claude-3-opus-20240229"
    assert engine.predecessor("claude-3-opus-20240229") is None  # the oldest live one
    assert engine.predecessor("gpt-4.1-2025-04-14") == "gpt-4o-2024-11-20"


def _fallback_reply(profiles: Profiles, model: str, fallbacks: Any) -> BetaMessage:
    """The beta API's answer to `model` with `fallbacks`, from a simulator on `profiles`."""
    with Simulator(profiles, time_scale=0) as sim:
        base = sim.anthropic_base_url
        with anthropic.Anthropic(base_url=base, api_key="k", max_retries=0) as client:
            return client.beta.messages.create(
                model=model, max_tokens=50, messages=HELLO, fallbacks=fallbacks, betas=[BETA]
            )


def test_oldest_model_with_default_fallback_stays_declined() -> None:
    oldest = "claude-3-opus-20240229"
    reply = _fallback_reply(_profiles({oldest: 1.0}), oldest, "default")
    _assert_refusal(reply, oldest)
    assert reply.usage.iterations is None


def test_every_hop_declining_ends_in_the_last_hops_refusal() -> None:
    opus = "claude-3-opus-20241219"
    reply = _fallback_reply(_profiles({FABLE: 1.0, opus: 1.0}), FABLE, [{"model": opus}])
    assert reply.model == opus
    assert reply.stop_reason == "refusal"
    assert reply.stop_details is not None
    assert reply.stop_details.category in CATEGORIES
    (block,) = reply.content
    assert isinstance(block, BetaFallbackBlock)
    assert (block.from_.model, block.to.model) == (FABLE, opus)
    assert reply.usage.iterations is not None
    assert [(i.type, getattr(i, "model", None)) for i in reply.usage.iterations] == [
        ("message", FABLE),
        ("message", opus),
    ]
    assert reply.usage.output_tokens == 0


def test_a_failing_fallback_is_recommended_instead() -> None:
    opus = "claude-3-opus-20241219"
    overloaded = {opus: ErrorRates(overloaded=1.0)}
    fallbacks = [{"model": opus}, {"model": SONNET}]
    reply = _fallback_reply(_profiles({FABLE: 1.0}, overloaded), FABLE, fallbacks)
    _assert_refusal(reply)
    assert reply.stop_details is not None
    assert reply.stop_details.recommended_model == opus


def test_fallbacks_are_not_used_when_the_model_answers(dant: anthropic.Anthropic) -> None:
    reply = dant.beta.messages.create(
        model=SONNET, max_tokens=50, messages=HELLO, fallbacks=[{"model": FABLE}], betas=[BETA]
    )
    assert reply.model == SONNET
    assert [b.type for b in reply.content] == ["text"]
    assert reply.usage.iterations is None


@pytest.mark.parametrize(
    ("fallbacks", "message"),
    [
        ("newest", "fallbacks: expected a list"),
        ([{"model": "gpt-4o"}], "fallbacks.0.model: The model `gpt-4o` does not exist"),
        ([{"model": SONNET, "colour": "red"}], "fallbacks.0: expected an object with a 'model'"),
        ([SONNET], "fallbacks.0: expected an object with a 'model'"),
    ],
)
def test_bad_fallbacks_are_refused_before_any_model_runs(
    dant: anthropic.Anthropic, fallbacks: object, message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError, match=message):
        dant.messages.create(
            model=SONNET, max_tokens=50, messages=HELLO, extra_body={"fallbacks": fallbacks}
        )


def test_fallback_latency_is_the_declined_ttft_then_the_fallbacks() -> None:
    def delay(refusals: dict[str, float], model: str, **extra: object) -> float:
        engine = Engine(_profiles(refusals), seed=3, time_scale=1.0)
        body = {"model": model, "max_tokens": 50, "messages": HELLO, **extra}
        reply = messages(engine, body)
        assert isinstance(reply, JsonReply)
        return reply.delay_s

    declined = delay({FABLE: 1.0}, FABLE)
    direct = delay({FABLE: 1.0}, SONNET)
    fell_back = delay({FABLE: 1.0}, FABLE, fallbacks=[{"model": SONNET}])
    assert 0 < declined < fell_back
    assert fell_back == pytest.approx(declined + direct)


# --- OpenAI refusals ---------------------------------------------------------------------


def test_openai_chat_refusal(doai: openai.OpenAI) -> None:
    raw = doai.chat.completions.with_raw_response.create(model=GPT, messages=OAI_HELLO)
    ChatCompletion.model_validate(json.loads(raw.text), strict=False)
    reply = raw.parse()
    choice = reply.choices[0]
    assert choice.finish_reason == "stop"
    assert choice.message.content is None
    assert choice.message.refusal == REFUSAL_TEXT == "I'm sorry, I can't help with that."
    assert reply.usage is not None
    assert reply.usage.completion_tokens == count_tokens(REFUSAL_TEXT)


def test_openai_chat_refusal_stream(doai: openai.OpenAI) -> None:
    chunks = list(
        doai.chat.completions.create(
            model=GPT, messages=OAI_HELLO, stream=True, stream_options={"include_usage": True}
        )
    )
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk.model_dump())
    deltas = [c.choices[0].delta for c in chunks if c.choices]
    assert "".join(d.refusal or "" for d in deltas) == REFUSAL_TEXT
    assert all(not d.content for d in deltas)
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == count_tokens(REFUSAL_TEXT)
    with doai.chat.completions.stream(model=GPT, messages=OAI_HELLO) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.refusal == REFUSAL_TEXT
    assert final.choices[0].message.content is None


@pytest.mark.anyio
async def test_openai_chat_refusal_async(declining: Simulator) -> None:
    base = declining.openai_base_url
    async with openai.AsyncOpenAI(base_url=base, api_key="k", max_retries=0) as client:
        reply = await client.chat.completions.create(model=GPT, messages=OAI_HELLO)
    assert reply.choices[0].message.refusal == REFUSAL_TEXT


def test_openai_responses_refusal(doai: openai.OpenAI) -> None:
    raw = doai.responses.with_raw_response.create(model=GPT, input="Hello")
    Response.model_validate(json.loads(raw.text))
    reply = raw.parse()
    assert reply.status == "completed"
    item = reply.output[0]
    assert item.type == "message"
    (part,) = item.content
    assert isinstance(part, ResponseOutputRefusal)
    assert part.refusal == REFUSAL_TEXT
    assert reply.output_text == ""
    events = list(doai.responses.create(model=GPT, input="Hello", stream=True))
    adapter: TypeAdapter[ResponseStreamEvent] = TypeAdapter(ResponseStreamEvent)
    for event in events:
        adapter.validate_python(event.model_dump())
    types = [e.type for e in events]
    assert "response.output_text.delta" not in types
    assert types.count("response.refusal.delta") == count_tokens(REFUSAL_TEXT)
    assert "response.refusal.done" in types
    with doai.responses.stream(model=GPT, input="Hello") as stream:
        final = stream.get_final_response()
    final_item = final.output[0]
    assert final_item.type == "message"
    assert [p.type for p in final_item.content] == ["refusal"]


# --- rates and determinism -----------------------------------------------------------------


def _stop_reasons(seed: int, n: int = 40) -> list[str | None]:
    with Simulator(_profiles({FABLE: 0.3}), seed=seed, time_scale=0) as sim:
        base = sim.anthropic_base_url
        with anthropic.Anthropic(base_url=base, api_key="k", max_retries=0) as client:
            return [
                client.messages.create(model=FABLE, max_tokens=5, messages=HELLO).stop_reason
                for _ in range(n)
            ]


def test_same_seed_same_refusals() -> None:
    first, second, other = _stop_reasons(5), _stop_reasons(5), _stop_reasons(6)
    assert first == second
    assert first != other
    assert 0 < first.count("refusal") < len(first)


def test_a_zero_refusal_rate_never_refuses_and_changes_no_other_draw() -> None:
    quiet = Engine(_profiles({FABLE: 0.0}), seed=2, time_scale=1.0)
    shy = Engine(_profiles({FABLE: 0.5}), seed=2, time_scale=1.0)
    refused = 0
    for i in range(400):
        conversation = f"request {i % 7}"
        answered = quiet.complete(FABLE, "anthropic", "Hello", conversation, 100)
        maybe = shy.complete(FABLE, "anthropic", "Hello", conversation, 100)
        assert answered.refusal is None
        assert answered.finish != "refusal"
        assert maybe.ttft_s == answered.ttft_s  # a declined attempt still took its ttft
        if maybe.refusal is None:
            assert maybe.text == answered.text
        else:
            refused += 1
            assert (maybe.finish, maybe.pieces) == ("refusal", ())
    assert 150 < refused < 250


def test_shipped_profiles_give_only_fable_refusals() -> None:
    rates = {m: p.refusal_rate for m, p in load_profiles().models.items() if p.refusal_rate}
    assert rates == {FABLE: 0.05}
    engine = Engine(load_profiles(), seed=0, time_scale=0)
    outcomes = []
    for i in range(2000):
        try:
            outcomes.append(engine.complete(FABLE, "anthropic", "Hello", f"c{i}", 20).refusal)
        except SimulatedError:
            continue  # the profile's own transient errors
    assert len(outcomes) > 1900
    assert 0.03 < sum(o is not None for o in outcomes) / len(outcomes) < 0.07
    assert {o for o in outcomes if o is not None} == CATEGORIES
