"""Refusals, server-side fallbacks and compactions: what a safety classifier's decline and
Anthropic's beta `iterations` put on the span, through the real SDK clients.

A canary that refuses more than production is a regression users see, though every
call succeeds; a fallback model that answered a refusal is a substitution the request
asked for, not alias drift; compactions are billed apart from the usage's counts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from genai_prices import Usage, calc_price

from tests.instrumentation.conftest import (
    COMPACTION,
    REFUSE,
    REFUSE_LATE,
    TEXT_CHUNKS,
    Telemetry,
    anthropic_client,
    openai_client,
)

ASKED = "claude-fable-5"  # a pinned id (a dateless snapshot)
FALLBACK = "claude-opus-4-8"
FALLBACKS = {"fallbacks": [{"model": FALLBACK}], "betas": ["server-side-fallback-2026-07-01"]}


def _ask(prompt: str, **extra: Any) -> dict[str, Any]:
    return {
        "model": ASKED,
        "max_tokens": 64,
        "messages": [{"role": "user", "content": prompt}],
        **extra,
    }


def beta_create(prompt: str, **extra: Any) -> Any:
    return anthropic_client().beta.messages.create(**_ask(prompt, **extra))


def beta_stream(prompt: str, **extra: Any) -> Any:
    return list(anthropic_client().beta.messages.create(stream=True, **_ask(prompt, **extra)))


def beta_stream_helper(prompt: str, **extra: Any) -> Any:
    with anthropic_client().beta.messages.stream(**_ask(prompt, **extra)) as stream:
        return stream.get_final_message()


def beta_async_stream(prompt: str, **extra: Any) -> Any:
    async def run() -> Any:
        events = await anthropic_client(True).beta.messages.create(
            stream=True, **_ask(prompt, **extra)
        )
        return [event async for event in events]

    return asyncio.run(run())


BETA_CALLS = [beta_create, beta_stream, beta_stream_helper, beta_async_stream]


@pytest.mark.parametrize("call", BETA_CALLS)
def test_a_fallback_answer_records_the_refusal_and_the_model_that_answered(
    instrumented: Telemetry, call: Callable[..., Any]
) -> None:
    call(REFUSE, **FALLBACKS)
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.request.model"] == ASKED
    assert attrs["gen_ai.response.model"] == FALLBACK
    assert attrs["canarytrace.refused"] is True
    assert attrs["canarytrace.fallback_model"] == FALLBACK
    assert attrs["canarytrace.refusal_category"] == "cyber"  # the fallback block's trigger
    # The pin did not move: the request asked for this substitution.
    assert attrs["canarytrace.pinned"] is True
    assert attrs["canarytrace.alias_drift"] is False
    # Billed at the fallback model's rates (the fake's top-level usage: 11 + 100 cached
    # input tokens, 4 output tokens).
    expected = calc_price(
        Usage(input_tokens=111, output_tokens=4, cache_read_tokens=100),
        FALLBACK,
        provider_id="anthropic",
    ).total_price
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize("call", BETA_CALLS)
def test_a_fallback_that_takes_over_mid_answer_is_read_after_the_first_token(
    instrumented: Telemetry, call: Callable[..., Any]
) -> None:
    """The refused model had streamed text (so the reader saw its first token) when the
    fallback block came: the reader must still see the block."""
    call(REFUSE_LATE, **FALLBACKS)
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.response.model"] == FALLBACK
    assert attrs["canarytrace.fallback_model"] == FALLBACK
    assert attrs["canarytrace.alias_drift"] is False


@pytest.mark.parametrize("call", BETA_CALLS)
def test_a_plain_refusal_is_recorded_without_a_fallback(
    instrumented: Telemetry, call: Callable[..., Any]
) -> None:
    call(REFUSE)
    attrs = instrumented.one_span().attributes
    assert attrs["canarytrace.refused"] is True
    assert attrs["canarytrace.refusal_category"] == "cyber"  # the stop details'
    assert attrs["gen_ai.response.finish_reasons"] == ("refusal",)
    assert attrs["gen_ai.response.model"] == ASKED
    assert "canarytrace.fallback_model" not in attrs
    assert attrs["gen_ai.usage.output_tokens"] == 0


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_the_first_party_api_records_refusals_too(instrumented: Telemetry, stream: bool) -> None:
    client = anthropic_client()
    answer = client.messages.create(stream=stream, **_ask(REFUSE))
    if stream:
        list(answer)
    attrs = instrumented.one_span().attributes
    assert attrs["canarytrace.refused"] is True
    assert attrs["canarytrace.refusal_category"] == "cyber"


@pytest.mark.parametrize("call", BETA_CALLS)
def test_an_answer_is_not_a_refusal(instrumented: Telemetry, call: Callable[..., Any]) -> None:
    call("Say hello", **FALLBACKS)
    attrs = instrumented.one_span().attributes
    assert "canarytrace.refused" not in attrs
    assert "canarytrace.fallback_model" not in attrs
    assert "canarytrace.refusal_category" not in attrs
    assert attrs["gen_ai.response.model"] == ASKED


def test_the_application_gets_the_sdks_own_answer(instrumented: Telemetry) -> None:
    """Reading the fallback block and the iterations changes nothing the caller sees."""
    message = beta_stream_helper(REFUSE, **FALLBACKS)
    assert message.model == FALLBACK
    assert [block.type for block in message.content] == ["fallback", "text"]
    assert message.content[1].text == "".join(TEXT_CHUNKS)
    assert [step.type for step in message.usage.iterations] == ["message", "fallback_message"]


COMPACT = {"context_management": {"edits": [{"type": "compact_20260112"}]}}


@pytest.mark.parametrize("call", BETA_CALLS)
def test_compactions_are_recorded_and_priced(
    instrumented: Telemetry, call: Callable[..., Any]
) -> None:
    """Anthropic bills a compaction's tokens but leaves them out of the usage's counts."""
    call("Say hello", **COMPACT)
    attrs = instrumented.one_span().attributes
    assert attrs["anthropic.usage.compaction.input_tokens"] == COMPACTION["input_tokens"]
    assert attrs["anthropic.usage.compaction.output_tokens"] == COMPACTION["output_tokens"]
    assert attrs["gen_ai.usage.input_tokens"] == 111  # the top-level counts, as reported
    answer = Usage(input_tokens=111, output_tokens=4, cache_read_tokens=100)
    summary = Usage(
        input_tokens=COMPACTION["input_tokens"], output_tokens=COMPACTION["output_tokens"]
    )
    expected = sum(
        calc_price(usage, ASKED, provider_id="anthropic").total_price for usage in (answer, summary)
    )
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected), rel=1e-9)


def _openai_chat(stream: bool) -> None:
    kwargs: dict[str, Any] = {
        "model": "gpt-4o-2024-11-20",
        "messages": [{"role": "user", "content": REFUSE}],
    }
    answer = openai_client().chat.completions.create(stream=stream, **kwargs)
    if stream:
        list(answer)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_an_openai_refusal_is_recorded(instrumented: Telemetry, stream: bool) -> None:
    _openai_chat(stream)
    attrs = instrumented.one_span().attributes
    assert attrs["canarytrace.refused"] is True
    assert "canarytrace.fallback_model" not in attrs


def test_a_content_filter_ending_is_a_refusal() -> None:
    """OpenAI's (and Azure's) filter withheld the answer: the user got none."""
    from openai.types.chat import ChatCompletion

    from canarytrace.instrumentation import _extract as X

    body = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-11-20",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": None},
                "finish_reason": "content_filter",
            }
        ],
    }
    out, _ = X.openai_chat_response(ChatCompletion.model_validate(body))
    assert out["canarytrace.refused"] is True
    body["choices"][0]["finish_reason"] = "stop"
    out, _ = X.openai_chat_response(ChatCompletion.model_validate(body))
    assert "canarytrace.refused" not in out


@pytest.mark.parametrize(("part", "refused"), [("refusal", True), ("output_text", False)])
def test_a_responses_refusal_part_is_a_refusal(part: str, refused: bool) -> None:
    from openai.types.responses import Response

    from canarytrace.instrumentation import _extract as X

    content = (
        {"type": "refusal", "refusal": "I can't help with that."}
        if part == "refusal"
        else {"type": "output_text", "text": "Hello", "annotations": []}
    )
    response = Response.model_validate(
        {
            "id": "resp_1",
            "object": "response",
            "created_at": 1,
            "model": "gpt-4o-2024-11-20",
            "status": "completed",
            "output": [
                {
                    "type": "message",
                    "id": "msg_1",
                    "role": "assistant",
                    "status": "completed",
                    "content": [content],
                }
            ],
            "parallel_tool_calls": False,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": 5,
                "output_tokens": 3,
                "total_tokens": 8,
                "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                "output_tokens_details": {"reasoning_tokens": 0},
            },
        }
    )
    out, _ = X.openai_responses_response(response)
    assert out.get("canarytrace.refused", False) is refused
