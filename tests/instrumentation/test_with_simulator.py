"""Through real HTTP and SSE: the SDKs against the provider simulator, instrumented."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anthropic
import openai
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from canarytrace import attributes as A
from canarytrace.analysis.load import load
from canarytrace.instrumentation import instrument, uninstrument
from canarytrace.simulator import Simulator, count_tokens
from canarytrace.simulator.anthropic_api import CACHE_MIN_TOKENS
from canarytrace.telemetry import OtlpJsonLinesExporter
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


def test_each_span_names_the_request_id_the_provider_sent(
    instrumented: Telemetry, simulator: Simulator
) -> None:
    """The id a provider's support asks for, taken from the HTTP reply, streamed or not."""
    claude = anthropic.Anthropic(
        base_url=simulator.anthropic_base_url, api_key="test-key", max_retries=0
    )
    gpt = openai.OpenAI(base_url=simulator.openai_base_url, api_key="test-key", max_retries=0)
    message = claude.messages.create(
        model="claude-3-5-sonnet-20241022", max_tokens=9, messages=PROMPT
    )
    completion = gpt.chat.completions.create(model="gpt-4o-2024-08-06", messages=PROMPT)
    stream = gpt.chat.completions.create(model="gpt-4o-2024-08-06", messages=PROMPT, stream=True)
    with stream:
        list(stream)
    sent = [message._request_id, completion._request_id, stream.response.headers["x-request-id"]]
    keys = ["anthropic.request.id", "openai.request.id", "openai.request.id"]
    recorded = [
        span.attributes.get(key) for span, key in zip(instrumented.llm_spans(), keys, strict=True)
    ]
    assert recorded == sent
    assert len(set(sent)) == 3 and all(isinstance(request_id, str) for request_id in sent)


def test_a_refused_request_answered_by_a_fallback_over_http(instrumented: Telemetry) -> None:
    """The simulator's Claude Fable 5 declines everything; its fallback answers, streamed."""
    from canarytrace.simulator.profiles import load_profiles

    shipped = load_profiles()
    fable = shipped.models["claude-fable-5"].model_copy(update={"refusal_rate": 1.0})
    profiles = shipped.model_copy(update={"models": {**shipped.models, "claude-fable-5": fable}})
    fallback = "claude-3-7-sonnet-20250219"
    with Simulator(profiles, time_scale=0) as simulator:
        client = anthropic.Anthropic(
            base_url=simulator.anthropic_base_url, api_key="test-key", max_retries=0
        )
        request: dict[str, Any] = {"model": "claude-fable-5", "max_tokens": 100}
        request["messages"] = PROMPT
        with client.beta.messages.stream(
            **request, fallbacks=[{"model": fallback}], betas=["server-side-fallback-2026-07-01"]
        ) as stream:
            message = stream.get_final_message()
        client.messages.create(**request)  # no fallback: the refusal is the answer
    answered, declined = instrumented.llm_spans()
    assert message.model == fallback
    assert answered.attributes["gen_ai.response.model"] == fallback
    assert answered.attributes["canarytrace.fallback_model"] == fallback
    assert answered.attributes["canarytrace.refused"] is True
    assert answered.attributes["canarytrace.alias_drift"] is False
    assert answered.attributes["gen_ai.usage.output_tokens"] == message.usage.output_tokens
    assert declined.attributes["canarytrace.refused"] is True
    for span in (answered, declined):  # the policy area the simulator drew
        assert span.attributes["canarytrace.refusal_category"] in {"cyber", "bio", "general_harms"}
    assert declined.attributes["gen_ai.response.finish_reasons"] == ("refusal",)
    assert "canarytrace.fallback_model" not in declined.attributes


def test_a_background_response_polled_over_http_gets_its_result_recorded(
    instrumented: Telemetry,
) -> None:
    """Created queued, polled until done: the record has what the foreground call says."""
    model = "gpt-4o-2024-11-20"
    with Simulator(seed=9, time_scale=0.2) as simulator:
        client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="k", max_retries=0)
        queued = client.responses.create(model=model, input="Hello", background=True)
        done = client.responses.retrieve(queued.id)
        while done.status in ("queued", "in_progress"):
            time.sleep(0.02)
            done = client.responses.retrieve(queued.id)
        client.responses.retrieve(queued.id)  # polled once more: recorded once
    with Simulator(seed=9, time_scale=0) as simulator:
        client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="k", max_retries=0)
        client.responses.create(model=model, input="Hello")
    background, foreground = instrumented.llm_spans()
    [record] = [s for s in instrumented.spans() if s.name == A.BACKGROUND_RESULT_SPAN_NAME]
    assert queued.status == "queued" and done.status == "completed"
    assert background.attributes[A.BACKGROUND] is True
    assert record.attributes[A.GEN_AI_RESPONSE_ID] == background.attributes[A.GEN_AI_RESPONSE_ID]
    for name in (A.GEN_AI_USAGE_INPUT_TOKENS, A.GEN_AI_USAGE_OUTPUT_TOKENS, A.COST_USD):
        assert record.attributes[name] == foreground.attributes[name]
    assert record.attributes[A.BACKGROUND_DURATION_MS] > 0


def test_the_input_read_from_the_prompt_cache_reaches_the_frame_of_calls(
    tmp_path: Path, simulator: Simulator
) -> None:
    """What the judge weighs a cold cache by: the second call reads the system prompt the
    first one cached, and the loader gives it in `cache_read_tokens`."""
    manual = "Our refund policy. " * (CACHE_MIN_TOKENS // 3)
    system: Any = [{"type": "text", "text": manual, "cache_control": {"type": "ephemeral"}}]
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(OtlpJsonLinesExporter(tmp_path)))
    instrument(tracer_provider=provider)
    try:
        client = anthropic.Anthropic(
            base_url=simulator.anthropic_base_url, api_key="test-key", max_retries=0
        )
        for _ in range(2):
            client.messages.create(
                model="claude-3-5-sonnet-20241022", max_tokens=50, system=system, messages=PROMPT
            )
    finally:
        uninstrument()
        provider.shutdown()

    first, second = load(tmp_path).calls.sort("start").to_dicts()
    assert first["cache_read_tokens"] is None  # written to the cache, none read
    assert second["cache_read_tokens"] == count_tokens(manual)
    assert second["input_tokens"] > second["cache_read_tokens"]  # the input counts them
