"""The pure extraction functions, on plain values and real SDK objects (no wrapt, no OTel)."""

from __future__ import annotations

import json
from types import SimpleNamespace as NS

import anthropic
import httpx2
import openai
import pydantic
import pytest
from anthropic.types import Message
from openai.types.chat import ChatCompletion

from canarytrace.instrumentation import _extract as X
from canarytrace.instrumentation.anthropic import AnthropicAccumulator


def test_request_attributes_skip_unset_values() -> None:
    kwargs = {
        "temperature": openai.NOT_GIVEN,
        "top_p": anthropic.omit,
        "seed": None,
        "max_tokens": 100,
        "max_completion_tokens": openai.omit,
        "stream": True,
    }
    out: dict[str, object] = {}
    X.request_attributes(kwargs, X.PARAMS["openai.chat"], out)
    assert out == {"gen_ai.request.max_tokens": 100, "gen_ai.request.stream": True}


def test_request_settings_take_only_values_of_their_type() -> None:
    kwargs = {
        "stop": ["a", "b"],
        "n": True,  # a bool is no count
        "reasoning_effort": openai.omit,
        "service_tier": "",
        "frequency_penalty": None,
        "presence_penalty": 0,
    }
    out: dict[str, object] = {}
    X.request_attributes(kwargs, X.PARAMS["openai.chat"], out)
    assert out == {
        "gen_ai.request.stop_sequences": ["a", "b"],
        "gen_ai.request.presence_penalty": 0,
    }
    out = {}
    anthropic_kwargs = {
        "thinking": {"type": "disabled"},  # no budget
        "output_config": {"effort": None},  # the SDK's "leave it to the model"
        "betas": ["a", 3],  # not all strings
        "stop_sequences": anthropic.omit,
    }
    X.request_attributes(anthropic_kwargs, X.PARAMS["anthropic.messages"], out)
    assert out == {"anthropic.thinking.type": "disabled"}


class _Answer(pydantic.BaseModel):
    text: str


@pytest.mark.parametrize(
    ("params", "kwargs", "expected"),
    [
        ("openai.chat", {"response_format": _Answer}, "json"),  # what `parse` takes
        ("openai.chat", {"response_format": {"type": "json_schema"}}, "json"),
        ("openai.chat", {"response_format": {"type": "text"}}, "text"),
        ("openai.chat", {"response_format": {"type": ["json"]}}, None),
        ("openai.chat", {"response_format": openai.omit}, None),
        ("openai.responses", {"text_format": _Answer}, "json"),
        ("openai.responses", {"text": {"format": {"type": "json_schema"}}}, "json"),
        ("openai.responses", {"text": {"verbosity": "low"}}, None),
        ("anthropic.messages", {"output_format": _Answer}, "json"),
        ("anthropic.messages", {"output_config": {"format": {"type": "json_schema"}}}, "json"),
    ],
)
def test_the_output_type_is_read_from_the_requested_format(
    params: str, kwargs: dict[str, object], expected: str | None
) -> None:
    out: dict[str, object] = {}
    X.request_attributes(kwargs, X.PARAMS[params], out)
    assert out.get("gen_ai.output.type") == expected


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://api.openai.com/v1", ("api.openai.com", 443)),
        ("http://localhost:8080/v1", ("localhost", 8080)),
        ("http://proxy/v1", ("proxy", 80)),
    ],
)
def test_server_attributes_fill_in_default_ports(url: str, expected: tuple[str, int]) -> None:
    attrs = X.server_attributes(httpx2.URL(url))
    assert (attrs["server.address"], attrs["server.port"]) == expected


def test_anthropic_usage_counts_cached_input_in_the_input() -> None:
    message = Message.model_validate(
        {
            "id": "msg_1",
            "type": "message",
            "role": "assistant",
            "model": "claude-3-5-sonnet-20241022",
            "content": [{"type": "text", "text": "hi"}],
            "stop_reason": "max_tokens",
            "stop_sequence": None,
            "usage": {
                "input_tokens": 10,
                "output_tokens": 2,
                "cache_read_input_tokens": 30,
                "cache_creation_input_tokens": 5,
            },
        }
    )
    attrs, usage = X.anthropic_message_response(message)
    assert usage == X.Usage(45, 2, 30, 5)
    assert attrs["gen_ai.response.finish_reasons"] == ["max_tokens"]  # the provider's word


def _chat_completion(finish_reason: str, usage: dict[str, object]) -> dict[str, object]:
    """The body of a one-choice chat completion with `usage`."""
    return {
        "id": "c",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-2024-08-06",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "x"},
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage,
    }


def test_openai_usage_reads_cached_prompt_tokens() -> None:
    usage_body = {
        "prompt_tokens": 50,
        "completion_tokens": 7,
        "total_tokens": 57,
        "prompt_tokens_details": {"cached_tokens": 20},
    }
    completion = ChatCompletion.model_validate(_chat_completion("length", usage_body))
    attrs, usage = X.openai_chat_response(completion)
    assert usage == X.Usage(50, 7, 20, 0)
    assert attrs["gen_ai.response.finish_reasons"] == ["length"]


def test_a_usage_count_that_is_not_a_number_reads_zero() -> None:
    # The SDK builds responses without validating them, so a compatible server's odd
    # count reaches the reader as sent; it must not reach the price arithmetic.
    from openai._models import construct_type

    usage_body = {"prompt_tokens": "n/a", "completion_tokens": 7, "total_tokens": 7}
    completion = construct_type(value=_chat_completion("stop", usage_body), type_=ChatCompletion)
    attrs, usage = X.openai_chat_response(completion)
    assert usage == X.Usage(0, 7, 0, 0)
    assert attrs["gen_ai.response.id"] == "c"
    start = NS(input_tokens="n/a", cache_read_input_tokens=None, cache_creation_input_tokens=3)
    delta = NS(input_tokens=None, output_tokens=4, cache_read_input_tokens=None)
    assert X.anthropic_usage(delta, start) == X.Usage(3, 4, 0, 3)


def test_input_messages_cover_system_prompts_and_content_blocks() -> None:
    kwargs = {
        "system": "Be brief.",
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image"}]},
            {"role": "assistant", "content": "Hello"},
        ],
    }
    assert json.loads(X.input_messages(kwargs) or "") == [
        {"role": "system", "parts": [{"type": "text", "content": "Be brief."}]},
        {"role": "user", "parts": [{"type": "text", "content": "Hi"}]},
        {"role": "assistant", "parts": [{"type": "text", "content": "Hello"}]},
    ]
    assert X.input_messages({"model": "m"}) is None


def test_user_id_comes_from_the_request_fields_the_providers_define() -> None:
    assert X.request_user_id({"user": "u1"}) == "u1"
    assert X.request_user_id({"safety_identifier": "s1", "user": "u1"}) == "s1"
    assert X.request_user_id({"metadata": {"user_id": "a1"}}) == "a1"
    assert X.request_user_id({"user": openai.NOT_GIVEN}) is None


def test_anthropic_stream_usage_takes_each_count_from_the_last_event_that_states_it() -> None:
    start_usage = NS(
        input_tokens=10, output_tokens=1, cache_read_input_tokens=100, cache_creation_input_tokens=0
    )
    message = NS(id="msg_9", model="claude-x", usage=start_usage)
    # The final delta restates output and cache reads, and leaves the input count out.
    delta_usage = NS(
        input_tokens=None,
        output_tokens=7,
        cache_read_input_tokens=90,
        cache_creation_input_tokens=None,
    )
    acc = AnthropicAccumulator(capture=False)
    acc.process(NS(type="message_start", message=message))
    acc.process(NS(type="message_delta", delta=NS(stop_reason="max_tokens"), usage=delta_usage))
    attributes, usage = acc.result()
    assert attributes["gen_ai.response.finish_reasons"] == ["max_tokens"]
    assert usage == X.Usage(input=100, output=7, cache_read=90, cache_write=0)


def test_anthropic_stream_cut_before_its_message_delta_keeps_the_start_usage() -> None:
    start_usage = NS(
        input_tokens=10,
        output_tokens=1,
        cache_read_input_tokens=None,
        cache_creation_input_tokens=4,
    )
    acc = AnthropicAccumulator(capture=False)
    acc.process(NS(type="message_start", message=NS(id="msg_9", model="m", usage=start_usage)))
    assert acc.result()[1] == X.Usage(input=14, output=1, cache_read=0, cache_write=4)


def test_anthropic_stream_without_usage_gives_none() -> None:
    acc = AnthropicAccumulator(capture=False)
    acc.process(NS(type="message_start", message=NS(id="msg_9", model="m", usage=None)))
    assert acc.result() == ({"gen_ai.response.id": "msg_9", "gen_ai.response.model": "m"}, None)
