"""Cost per call equals genai-prices' own calculation; unknown models cost nothing, once;
a price that fails loses the cost attribute, nothing else."""

from __future__ import annotations

import logging
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from genai_prices import Usage, calc_price, data_snapshot
from genai_prices.types import ClauseEquals, ModelInfo, ModelPrice

from canarytrace import pricing
from tests.instrumentation.conftest import COMPACTION, Telemetry, anthropic_client, openai_client

# (input, output, cache read, cache write, of which kept an hour)
USAGES = [
    (1200, 300, 0, 0, 0),
    (5000, 20, 4000, 0, 0),
    (90_000, 4000, 1000, 2000, 0),
    (90_000, 4000, 1000, 2000, 1500),
    (300_000, 900, 0, 0, 0),
]


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
    inp, out, read, write, hour = usage
    tokens = Usage(
        input_tokens=inp,
        output_tokens=out,
        cache_read_tokens=read,
        cache_write_tokens=write,
        cache_write_1h_tokens=hour,
    )
    expected = calc_price(tokens, model, provider_id=provider).total_price
    assert pricing.cost_usd(provider, model, inp, out, read, write, hour) == pytest.approx(
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


def test_price_data_that_genai_prices_updates_while_running_is_used() -> None:
    """genai-prices' `UpdatePrices` swaps its price data in the background: how a process
    learns the price of a model released after its genai-prices version (the newest
    model, the usual canary). The next call is priced from the new data."""
    model = "gpt-7-2027-01-01"
    assert pricing.cost_usd("openai", model, 1000, 100) is None
    bundled = data_snapshot.get_snapshot()
    released = ModelInfo(
        id=model,
        match=ClauseEquals(equals=model),
        prices=ModelPrice(input_mtok=Decimal(4), output_mtok=Decimal(16)),
    )
    providers = [
        replace(provider, models=[*provider.models, released])
        if provider.id == "openai"
        else provider
        for provider in bundled.providers
    ]
    known = pricing.cost_usd("openai", "gpt-4o-2024-08-06", 1000, 100)
    data_snapshot.set_custom_snapshot(
        data_snapshot.DataSnapshot(providers=providers, from_auto_update=True)
    )
    try:
        assert pricing.cost_usd("openai", model, 1000, 100) == pytest.approx(
            1000 * 4e-6 + 100 * 16e-6
        )
        assert pricing.cost_usd("openai", "gpt-4o-2024-08-06", 1000, 100) == known
    finally:
        data_snapshot.set_custom_snapshot(None)
    assert pricing.cost_usd("openai", model, 1000, 100) is None  # the bundled data again


def test_a_price_that_fails_costs_the_span_only_its_cost(
    instrumented: Telemetry, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def failing_pricer(*counts: int) -> float:
        raise ArithmeticError("the price catalogue disagrees with itself")

    monkeypatch.setitem(pricing._pricers, ("openai", "gpt-4o-2024-08-06", None), failing_pricer)
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


def _call(create: Any, stream: bool, **kwargs: Any) -> None:
    """`create(**kwargs)`, or the same call streamed and read to its end."""
    if not stream:
        create(**kwargs)
        return
    with create(stream=True, **kwargs) as events:
        for _event in events:
            pass


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(
    ("model", "tier"),
    [("gpt-5", "flex"), ("gpt-4o-2024-08-06", "priority"), ("gpt-4o-2024-08-06", "default")],
)
def test_an_openai_call_is_priced_at_the_service_tier_that_served_it(
    instrumented: Telemetry, model: str, tier: str, stream: bool
) -> None:
    """Flex is half the standard price, priority about twice: the response's tier (the
    fake answers with the one asked for) decides the cost, as genai-prices prices it."""
    kwargs: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": "x"}],
        "service_tier": tier,
    }
    create = openai_client().chat.completions.create
    if stream:
        kwargs["stream_options"] = {"include_usage": True}
    _call(create, stream, **kwargs)
    attrs = instrumented.one_span().attributes
    assert attrs["openai.response.service_tier"] == tier
    usage = Usage(input_tokens=12, output_tokens=3)
    standard = calc_price(usage, model, provider_id="openai").total_price
    expected = calc_price(
        usage, model, provider_id="openai", price_context={"service_tier": tier}
    ).total_price
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected), rel=1e-9)
    assert (expected == standard) is (tier == "default")


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
def test_an_anthropic_call_in_fast_mode_is_priced_as_fast(
    instrumented: Telemetry, stream: bool
) -> None:
    kwargs: dict[str, Any] = {
        "model": "claude-opus-4-8",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "speed": "fast",
    }
    create = anthropic_client().messages.create
    _call(create, stream, **kwargs)
    usage = Usage(input_tokens=111, output_tokens=4, cache_read_tokens=100)
    standard = calc_price(usage, "claude-opus-4-8", provider_id="anthropic").total_price
    fast = calc_price(
        usage, "claude-opus-4-8", provider_id="anthropic", price_context={"speed": "fast"}
    ).total_price
    if fast == standard:  # genai-prices before 0.2.3 has no fast-mode prices
        pytest.skip("the installed genai-prices does not price Anthropic's fast mode")
    cost = instrumented.one_span().attributes["canarytrace.cost_usd"]
    assert cost == pytest.approx(float(fast), rel=1e-9)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize(("geo", "factor"), [("us", 1.1), ("global", 1.0)])
def test_an_anthropic_call_run_in_the_us_only_is_priced_at_its_premium(
    instrumented: Telemetry, stream: bool, geo: str, factor: float
) -> None:
    """US-only inference costs 1.1x every token price, which genai-prices leaves out; the
    span says where the call ran, from the usage the API answered with. The compaction
    a call made is billed at the same premium."""
    kwargs: dict[str, Any] = {
        "model": "claude-opus-4-8",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "extra_body": {"inference_geo": geo},  # the floors' SDK may lack the parameter
    }
    create = anthropic_client().beta.messages.create
    _call(create, stream, **kwargs, context_management={"edits": [{"type": "compact"}]})
    attrs = instrumented.one_span().attributes
    assert attrs["anthropic.usage.inference_geo"] == geo
    tokens = Usage(input_tokens=111, output_tokens=4, cache_read_tokens=100)
    summary = Usage(
        input_tokens=COMPACTION["input_tokens"], output_tokens=COMPACTION["output_tokens"]
    )
    standard = sum(
        calc_price(u, "claude-opus-4-8", provider_id="anthropic").total_price
        for u in (tokens, summary)
    )
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(standard) * factor, rel=1e-9)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("ttl", ["5m", "1h"])
def test_anthropic_cache_writes_are_priced_by_their_lifetime(
    instrumented: Telemetry, stream: bool, ttl: str
) -> None:
    """An hour-long cache write costs 2x the input price, a five-minute one 1.25x."""
    kwargs: dict[str, Any] = {
        "model": "claude-sonnet-4-6",
        "max_tokens": 5,
        "messages": [{"role": "user", "content": "x"}],
        "cache_control": {"type": "ephemeral", "ttl": ttl},
    }
    create = anthropic_client().messages.create
    _call(create, stream, **kwargs)
    attrs = instrumented.one_span().attributes
    hour = 300 if ttl == "1h" else 0
    assert attrs["anthropic.usage.cache_creation.ephemeral_1h_input_tokens"] == hour
    assert attrs["anthropic.usage.cache_creation.ephemeral_5m_input_tokens"] == 300 - hour
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 300
    assert attrs["gen_ai.usage.input_tokens"] == 411  # 11 fresh + 100 read + 300 written
    tokens = {"input_tokens": 411, "output_tokens": 4, "cache_read_tokens": 100}
    usage = Usage(**tokens, cache_write_tokens=300, cache_write_1h_tokens=hour)
    expected = calc_price(usage, "claude-sonnet-4-6", provider_id="anthropic").total_price
    five_minutes = calc_price(
        Usage(**tokens, cache_write_tokens=300), "claude-sonnet-4-6", provider_id="anthropic"
    ).total_price
    assert (expected > five_minutes) is (ttl == "1h")
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected), rel=1e-9)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("api", ["chat", "responses"])
def test_openai_cache_writes_are_priced_as_writes(
    instrumented: Telemetry, stream: bool, api: str
) -> None:
    """GPT-6 bills a prompt-cache write at 1.25x the input price; before, the written
    tokens were priced as plain input."""
    model = "gpt-6-sol"
    client = openai_client()
    if api == "chat":
        create = client.chat.completions.create
        kwargs: dict[str, Any] = {"messages": [{"role": "user", "content": "x"}]}
        if stream:
            kwargs["stream_options"] = {"include_usage": True}
        tokens = {"input_tokens": 12, "output_tokens": 3}
    else:
        create, kwargs = client.responses.create, {"input": "x"}
        tokens = {"input_tokens": 20, "output_tokens": 4, "cache_read_tokens": 5}
    _call(create, stream, model=model, prompt_cache_key="user-1", **kwargs)
    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.usage.cache_creation.input_tokens"] == 8
    expected = calc_price(Usage(**tokens, cache_write_tokens=8), model, provider_id="openai")
    as_input = calc_price(Usage(**tokens), model, provider_id="openai")
    assert expected.total_price > as_input.total_price
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected.total_price), rel=1e-9)


@pytest.mark.parametrize("stream", [False, True], ids=["create", "stream"])
@pytest.mark.parametrize("provider", ["openai", "anthropic"])
def test_web_searches_are_priced_apiece(
    instrumented: Telemetry, stream: bool, provider: str
) -> None:
    """The providers' web search tools bill each search ($10 per 1,000 here), which can
    cost more than the call's tokens. The fake searches twice when offered the tool."""
    if provider == "openai":
        model, create = "gpt-4o-2024-08-06", openai_client().responses.create
        kwargs: dict[str, Any] = {"input": "x", "tools": [{"type": "web_search"}]}
        tokens = {"input_tokens": 20, "output_tokens": 4, "cache_read_tokens": 5}
    else:
        model, create = "claude-sonnet-4-6", anthropic_client().messages.create
        kwargs = {
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "web_search_20250305", "name": "web_search"}],
        }
        tokens = {"input_tokens": 111, "output_tokens": 4, "cache_read_tokens": 100}
    _call(create, stream, model=model, **kwargs)
    searched = calc_price(Usage(**tokens, web_searches=2), model, provider_id=provider)
    only_tokens = calc_price(Usage(**tokens), model, provider_id=provider)
    assert searched.total_price > only_tokens.total_price
    cost = instrumented.one_span().attributes["canarytrace.cost_usd"]
    assert cost == pytest.approx(float(searched.total_price), rel=1e-9)
