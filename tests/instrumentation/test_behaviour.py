"""Instrumentation never changes what the application sees, and is switched on and off
cleanly: same return values, same exceptions, no content or secrets unless asked."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
from typing import Any

import anthropic
import openai
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ALWAYS_ON

from canarytrace import current_call
from canarytrace.instrumentation import _extract, _wrappers, instrument, uninstrument
from tests.instrumentation.conftest import (
    REQUEST_ID,
    Telemetry,
    anthropic_client,
    openai_client,
    recorded_points,
)

MESSAGES = [{"role": "user", "content": "Say hello"}]
OPENAI = "gpt-4o-2024-08-06"
CLAUDE = "claude-3-5-sonnet-20241022"


def _calls() -> list[tuple[str, Any]]:
    return [
        ("chat", lambda: openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)),
        (
            "chat stream",
            lambda: list(
                openai_client().chat.completions.create(
                    model=OPENAI, messages=MESSAGES, stream=True
                )
            ),
        ),
        ("responses", lambda: openai_client().responses.create(model=OPENAI, input="hi")),
        ("embeddings", lambda: openai_client().embeddings.create(model="e", input="hi")),
        (
            "messages",
            lambda: anthropic_client().messages.create(
                model=CLAUDE, max_tokens=5, messages=MESSAGES
            ),
        ),
        (
            "messages stream",
            lambda: list(
                anthropic_client().messages.create(
                    model=CLAUDE, max_tokens=5, messages=MESSAGES, stream=True
                )
            ),
        ),
        (
            "async chat",
            lambda: asyncio.run(
                openai_client(True).chat.completions.create(model=OPENAI, messages=MESSAGES)
            ),
        ),
    ]


def _dump(result: Any) -> Any:
    if isinstance(result, list):
        return [type(r).__name__ + json.dumps(r.model_dump(), default=str) for r in result]
    return type(result).__name__ + json.dumps(result.model_dump(), default=str)


def test_return_values_are_identical_with_and_without(telemetry: Telemetry) -> None:
    plain = [_dump(call()) for _, call in _calls()]
    instrument(tracer_provider=telemetry.provider)
    try:
        traced = [_dump(call()) for _, call in _calls()]
    finally:
        uninstrument()
    assert traced == plain
    assert len(telemetry.llm_spans()) == len(plain)


def _raise(call: Any) -> BaseException:
    with pytest.raises(Exception) as raised:
        call()
    return raised.value


ERRORS = [
    lambda: openai_client().chat.completions.create(model="error-model", messages=MESSAGES),
    lambda: anthropic_client().messages.create(
        model="error-model", max_tokens=5, messages=MESSAGES
    ),
    lambda: asyncio.run(
        openai_client(True).chat.completions.create(model="error-model", messages=MESSAGES)
    ),
]


@pytest.mark.parametrize("call", ERRORS, ids=["openai", "anthropic", "openai-async"])
def test_exceptions_are_identical_and_recorded(telemetry: Telemetry, call: Any) -> None:
    plain = _raise(call)
    instrument(tracer_provider=telemetry.provider)
    try:
        traced = _raise(call)
    finally:
        uninstrument()
    assert type(traced) is type(plain)
    assert isinstance(traced, openai.BadRequestError | anthropic.BadRequestError)
    assert str(traced) == str(plain)
    assert traced.status_code == plain.status_code == 400
    span = telemetry.one_span()
    assert span.status.status_code.name == "ERROR"
    assert span.attributes["error.type"] == "BadRequestError"
    assert "gen_ai.usage.input_tokens" not in span.attributes
    # The id a provider's support asks for about a failure, from the SDK's error.
    provider = "anthropic" if isinstance(traced, anthropic.BadRequestError) else "openai"
    assert span.attributes[f"{provider}.request.id"] == REQUEST_ID == traced.request_id


def test_instrument_twice_gives_one_span_per_call(telemetry: Telemetry) -> None:
    instrument(tracer_provider=telemetry.provider)
    instrument(tracer_provider=telemetry.provider)
    try:
        openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
        anthropic_client().messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    finally:
        uninstrument()
    assert len(telemetry.llm_spans()) == 2


def test_uninstrument_leaves_no_span(telemetry: Telemetry) -> None:
    instrument(tracer_provider=telemetry.provider)
    uninstrument()
    openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    assert telemetry.spans() == []
    uninstrument()  # a second time is harmless


def test_clients_created_before_instrument_are_traced(telemetry: Telemetry) -> None:
    client = openai_client()
    client.chat.completions.create(model=OPENAI, messages=MESSAGES)
    instrument(tracer_provider=telemetry.provider)
    try:
        client.chat.completions.create(model=OPENAI, messages=MESSAGES)
    finally:
        uninstrument()
    assert len(telemetry.llm_spans()) == 1


def test_instrument_before_the_sdk_is_imported() -> None:
    """A fresh interpreter: instrument() first, `import openai` afterwards."""
    script = textwrap.dedent(
        """
        import sys
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        import canarytrace
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        canarytrace.instrument(tracer_provider=provider)
        assert "openai" not in sys.modules
        from tests.instrumentation.conftest import openai_client
        openai_client().chat.completions.create(model="gpt-4o-2024-08-06", messages=[])
        print([s.name for s in exporter.get_finished_spans()])
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "['chat gpt-4o-2024-08-06']"


def test_content_is_absent_by_default(instrumented: Telemetry) -> None:
    openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    anthropic_client().messages.create(model=CLAUDE, max_tokens=5, messages=MESSAGES)
    for span in instrumented.llm_spans():
        assert "gen_ai.input.messages" not in span.attributes
        assert "gen_ai.output.messages" not in span.attributes
        assert "Say hello" not in str(dict(span.attributes))


def test_content_is_recorded_when_opted_in(with_content: Telemetry) -> None:
    openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    list(
        anthropic_client().messages.create(
            model=CLAUDE, max_tokens=5, messages=MESSAGES, stream=True
        )
    )
    for span in with_content.llm_spans():
        prompt = json.loads(span.attributes["gen_ai.input.messages"])
        assert prompt == [{"role": "user", "parts": [{"type": "text", "content": "Say hello"}]}]
        (answer,) = json.loads(span.attributes["gen_ai.output.messages"])
        assert answer["role"] == "assistant"
        assert answer["parts"] == [{"type": "text", "content": "Hello there"}]


def test_content_env_variable_opts_in(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    instrument(tracer_provider=telemetry.provider)
    try:
        openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    finally:
        uninstrument()
    assert "gen_ai.input.messages" in telemetry.one_span().attributes


def test_api_keys_never_reach_spans_or_logs(
    with_content: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("DEBUG"):
        openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
        with pytest.raises(anthropic.BadRequestError):
            anthropic_client().messages.create(model="error-model", max_tokens=5, messages=MESSAGES)
    recorded = " ".join(
        str(dict(s.attributes)) + str(s.status.description) + str(s.events)
        for s in with_content.spans()
    )
    for secret in ("sk-test-secret", "sk-ant-secret"):
        assert secret not in recorded
        assert secret not in caplog.text


@pytest.mark.parametrize("hook", ["openai_chat_response", "request_attributes"])
def test_internal_errors_are_swallowed_and_the_call_goes_on(
    telemetry: Telemetry, monkeypatch: pytest.MonkeyPatch, hook: str
) -> None:
    """A bug reading the response still ends the span; a bug before the span leaves the
    call untraced; the application gets its answer either way."""

    def broken(*args: Any) -> Any:
        raise RuntimeError("bug in canarytrace")

    monkeypatch.setattr(_extract, hook, broken)
    monkeypatch.setattr(_wrappers, hook, broken, raising=False)
    instrument(tracer_provider=telemetry.provider)
    try:
        result = openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    finally:
        uninstrument()
    assert result.choices[0].message.content == "Hello there"
    assert len(telemetry.llm_spans()) == (1 if hook == "openai_chat_response" else 0)


def test_a_call_whose_response_cannot_be_read_is_still_counted_when_unsampled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The span of a sampled-out call cannot say whether it ended; the call must be
    ended (counted in the metrics, told to the breaker) all the same."""

    def broken(response: Any) -> Any:
        raise RuntimeError("bug in canarytrace")

    monkeypatch.setattr(_extract, "openai_chat_response", broken)
    reader = InMemoryMetricReader()
    instrument(
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    try:
        openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    finally:
        uninstrument()
    durations = [
        count
        for (name, _labels), count in _metric_totals(reader).items()
        if name == "gen_ai.client.operation.duration"
    ]
    assert durations == [1]


def test_unsampled_calls_skip_response_work(monkeypatch: pytest.MonkeyPatch) -> None:
    def never(response: Any) -> Any:
        raise AssertionError("response read for a span that is not recorded")

    monkeypatch.setattr(_extract, "openai_chat_response", never)
    instrument(tracer_provider=TracerProvider(sampler=ALWAYS_OFF))
    try:
        result = openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    finally:
        uninstrument()
    assert result.id == "chatcmpl-1"


def _metric_totals(reader: InMemoryMetricReader) -> dict[tuple[Any, ...], Any]:
    """Each metric's points by their labels: how many values, and their sum where it is
    not a time."""
    totals: dict[tuple[Any, ...], Any] = {}
    for metric, point in recorded_points(reader):
        key = (metric.name, tuple(sorted(point.attributes.items())))
        if metric.name == "canarytrace.cost":
            totals[key] = pytest.approx(point.value)
        elif metric.unit == "s":
            totals[key] = point.count
        else:
            totals[key] = (point.count, point.sum)
    return totals


@pytest.mark.parametrize("call", [call for _, call in _calls()], ids=[n for n, _ in _calls()])
def test_metrics_count_the_calls_whose_spans_are_sampled_out(call: Any) -> None:
    """Dashboards read the metrics because traces are sampled: a call whose span is
    dropped still counts its duration, tokens, cost and response model."""
    totals = []
    for sampler in (ALWAYS_ON, ALWAYS_OFF):
        reader = InMemoryMetricReader()
        instrument(
            tracer_provider=TracerProvider(sampler=sampler),
            meter_provider=MeterProvider(metric_readers=[reader]),
        )
        try:
            call()
        finally:
            uninstrument()
        totals.append(_metric_totals(reader))
    sampled, unsampled = totals
    assert any(name == "gen_ai.client.operation.duration" for name, _ in sampled)
    assert unsampled == sampled


def test_current_call_names_the_last_llm_span(instrumented: Telemetry) -> None:
    openai_client().chat.completions.create(model=OPENAI, messages=MESSAGES)
    ref = current_call()
    context = instrumented.one_span().get_span_context()
    assert ref is not None
    assert int(ref.trace_id, 16) == context.trace_id
    assert int(ref.span_id, 16) == context.span_id
