"""Through real HTTP and SSE: the SDKs against the provider simulator, instrumented."""

from __future__ import annotations

import anthropic
import openai

from canarytrace.simulator import Simulator
from tests.instrumentation.conftest import Telemetry

PROMPT = [{"role": "user", "content": "What is the capital of Australia?"}]


def test_an_alias_request_is_unpinned_and_names_the_snapshot_that_answered(
    instrumented: Telemetry, simulator: Simulator
) -> None:
    client = anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key="test-key", max_retries=0
    )
    client.messages.create(model="claude-3-5-sonnet-latest", max_tokens=100, messages=PROMPT)
    attrs = instrumented.one_span().attributes
    assert attrs["canarytrace.pinned"] is False
    assert attrs["gen_ai.response.model"] == "claude-3-5-sonnet-20241022"
    assert attrs["server.address"] == "127.0.0.1"
    assert attrs["canarytrace.cost_usd"] > 0


def test_streams_over_http_end_with_usage_and_first_token_time(
    instrumented: Telemetry, simulator: Simulator
) -> None:
    claude = anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key="test-key", max_retries=0
    )
    with claude.messages.stream(
        model="claude-3-5-sonnet-20241022", max_tokens=100, messages=PROMPT
    ) as stream:
        message = stream.get_final_message()
    gpt = openai.OpenAI(base_url=simulator.openai_base_url, api_key="test-key", max_retries=0)
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in gpt.chat.completions.create(
            model="gpt-4o-2024-08-06", messages=PROMPT, stream=True
        )
        if chunk.choices
    )
    assert text
    claude_span, gpt_span = instrumented.llm_spans()
    assert claude_span.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert claude_span.attributes["gen_ai.response.finish_reasons"] == (message.stop_reason,)
    for span in (claude_span, gpt_span):
        assert span.attributes["canarytrace.time_to_first_token_ms"] > 0
        assert span.attributes["gen_ai.request.stream"] is True
