"""Cost per call equals genai-prices' own calculation; unknown models cost nothing, once;
a price that fails loses the cost attribute, nothing else."""

from __future__ import annotations

import logging

import pytest
from genai_prices import Usage, calc_price

from canarytrace import pricing
from tests.instrumentation.conftest import Telemetry, anthropic_client, openai_client

USAGES = [(1200, 300, 0, 0), (5000, 20, 4000, 0), (90_000, 4000, 1000, 2000), (300_000, 900, 0, 0)]


@pytest.mark.parametrize(
    ("provider", "model"),
    [
        ("openai", "gpt-4o-2024-08-06"),
        ("openai", "gpt-4o-mini-2024-07-18"),
        ("anthropic", "claude-3-5-sonnet-20241022"),
        ("anthropic", "claude-sonnet-4-20250514"),
        ("google", "gemini-2.5-pro"),  # tiered: priced above 200k input tokens differently
    ],
)
@pytest.mark.parametrize("usage", USAGES)
def test_cost_matches_genai_prices(provider: str, model: str, usage: tuple[int, ...]) -> None:
    inp, out, read, write = usage
    expected = calc_price(
        Usage(
            input_tokens=inp, output_tokens=out, cache_read_tokens=read, cache_write_tokens=write
        ),
        model,
        provider_id=provider,
    ).total_price
    assert pricing.cost_usd(provider, model, inp, out, read, write) == pytest.approx(
        float(expected), rel=1e-9
    )


def test_span_cost_matches_genai_prices(instrumented: Telemetry) -> None:
    anthropic_client().messages.create(
        model="claude-3-5-sonnet-20241022",
        max_tokens=5,
        messages=[{"role": "user", "content": "x"}],
    )
    attrs = instrumented.one_span().attributes
    # The fake reports 11 uncached + 100 cache-read input tokens and 4 output tokens.
    expected = calc_price(
        Usage(input_tokens=111, output_tokens=4, cache_read_tokens=100),
        "claude-3-5-sonnet-20241022",
        provider_id="anthropic",
    ).total_price
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected), rel=1e-9)


def test_unknown_model_has_no_cost_and_warns_once(
    instrumented: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai_client()
    with caplog.at_level(logging.WARNING, logger="canarytrace.pricing"):
        for _ in range(3):
            result = client.chat.completions.create(
                model="acme-unreleased-model-7", messages=[{"role": "user", "content": "x"}]
            )
            assert result.choices[0].message.content
    spans = instrumented.llm_spans()
    assert len(spans) == 3
    for span in spans:
        assert "canarytrace.cost_usd" not in span.attributes
        assert span.attributes["gen_ai.usage.input_tokens"] == 12
    warnings = [r for r in caplog.records if "acme-unreleased-model-7" in r.getMessage()]
    assert len(warnings) == 1


def test_a_price_that_fails_costs_the_span_only_its_cost(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_pricer(inp: int, out: int, read: int, write: int) -> float:
        raise ArithmeticError("the price catalogue disagrees with itself")

    monkeypatch.setitem(pricing._pricers, ("openai", "gpt-4o-2024-08-06"), failing_pricer)
    with caplog.at_level(logging.WARNING, logger="canarytrace.instrumentation"):
        result = openai_client().chat.completions.create(
            model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": "x"}]
        )
    assert result.choices[0].message.content
    attrs = instrumented.one_span().attributes
    assert "canarytrace.cost_usd" not in attrs
    assert attrs["gen_ai.response.id"] == "chatcmpl-1"
    assert attrs["gen_ai.response.model"] == "gpt-4o-2024-08-06"
    assert attrs["gen_ai.response.finish_reasons"] == ("stop",)
    assert attrs["gen_ai.usage.input_tokens"] == 12
    assert attrs["canarytrace.alias_drift"] is False
    assert any("end_call.cost" in r.getMessage() for r in caplog.records)
