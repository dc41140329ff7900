"""Calls through the clouds that resell the SDKs' models, and through OpenAI-compatible
services: the span names the provider the call went to, is priced from that provider's
catalogue, and does not mistake a platform's spelling of a model id for alias drift.

The real SDK client classes (AzureOpenAI, OpenAI with a `provider=`, AnthropicBedrock,
AnthropicVertex, AnthropicFoundry) send through an in-process transport that answers
every request with the model id a platform would send back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anthropic
import httpx2
import openai
import pytest
from genai_prices import Usage, calc_price
from openai.providers import bedrock, vertex

from canarytrace.instrumentation.providers import provider_name, same_model
from tests.instrumentation.conftest import Telemetry, reply_as

PROMPT = [{"role": "user", "content": "Say hi"}]


def _answer(served: str) -> Callable[[httpx2.Request], httpx2.Response]:
    """A handler that answers every request as model `served`."""
    return lambda request: reply_as(served, request.url.path)


def _answering(served: str) -> httpx2.Client:
    return httpx2.Client(transport=httpx2.MockTransport(_answer(served)))


def _azure(http: httpx2.Client) -> openai.AzureOpenAI:
    """An Azure OpenAI client on its usual endpoint, answered by `http`."""
    return openai.AzureOpenAI(
        api_key="k",
        azure_endpoint="https://contoso.openai.azure.com",
        api_version="2024-10-21",
        http_client=http,
    )


def _openai_call(client: Any, model: str) -> None:
    client.chat.completions.create(model=model, messages=PROMPT)


def _anthropic_call(client: Any, model: str) -> None:
    client.messages.create(model=model, max_tokens=64, messages=PROMPT)


# (case, client factory, request model, served model, provider, genai-prices provider id)
PLATFORMS = [
    (
        "azure openai client",
        _azure,
        "prod-gpt4o",  # a deployment name
        "gpt-4o-2024-11-20",
        "azure.ai.openai",
        "azure",
    ),
    (
        "azure v1 endpoint through OpenAI()",
        lambda http: openai.OpenAI(
            api_key="k", base_url="https://contoso.openai.azure.com/openai/v1/", http_client=http
        ),
        "gpt-4o-2024-11-20",
        "gpt-4o-2024-11-20",
        "azure.ai.openai",
        "azure",
    ),
    (
        "OpenAI(provider=bedrock)",
        lambda http: openai.OpenAI(
            provider=bedrock(region="us-east-1", api_key="k"), http_client=http
        ),
        "openai.gpt-oss-120b-1:0",
        "openai.gpt-oss-120b-1:0",
        "aws.bedrock",
        "aws",
    ),
    (
        "BedrockOpenAI",
        lambda http: openai.BedrockOpenAI(api_key="k", aws_region="us-east-1", http_client=http),
        "openai.gpt-oss-120b-1:0",
        "openai.gpt-oss-120b-1:0",
        "aws.bedrock",
        "aws",
    ),
    (
        "OpenAI(provider=vertex)",
        lambda http: openai.OpenAI(
            provider=vertex(project="p", location="us-central1", token_provider=lambda: "t"),
            http_client=http,
        ),
        "gemini-2.0-flash",
        "gemini-2.0-flash",
        "gcp.vertex_ai",
        "google",
    ),
    (
        "deepseek through OpenAI()",
        lambda http: openai.OpenAI(
            api_key="k", base_url="https://api.deepseek.com", http_client=http
        ),
        "deepseek-chat",
        "deepseek-chat",
        "deepseek",
        "deepseek",
    ),
    (
        "xai through OpenAI()",  # genai-prices files xAI as `x-ai`, the conventions `x_ai`
        lambda http: openai.OpenAI(api_key="k", base_url="https://api.x.ai/v1", http_client=http),
        "grok-3",
        "grok-3",
        "x_ai",
        "x-ai",
    ),
    (
        "openrouter through OpenAI()",  # no conventions' name: genai-prices' id
        lambda http: openai.OpenAI(
            api_key="k", base_url="https://openrouter.ai/api/v1", http_client=http
        ),
        "anthropic/claude-3.5-sonnet",
        "anthropic/claude-3.5-sonnet",
        "openrouter",
        "openrouter",
    ),
    (
        "anthropic bedrock client",
        lambda http: anthropic.AnthropicBedrock(
            api_key="k", aws_region="us-east-1", http_client=http
        ),
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "claude-3-5-sonnet-20241022",
        "aws.bedrock",
        "aws",
    ),
    (
        "anthropic vertex client",
        lambda http: anthropic.AnthropicVertex(
            region="us-east5", project_id="p", access_token="t", http_client=http
        ),
        "claude-3-5-sonnet-v2@20241022",
        "claude-3-5-sonnet-20241022",
        "gcp.vertex_ai",
        "google",
    ),
    (
        "anthropic foundry client",
        lambda http: anthropic.AnthropicFoundry(api_key="k", resource="r", http_client=http),
        "claude-sonnet-4-6",
        "claude-sonnet-4-6",
        "anthropic",
        "anthropic",
    ),
]


@pytest.mark.parametrize(
    ("make", "requested", "served", "provider", "prices_id"),
    [case[1:] for case in PLATFORMS],
    ids=[case[0] for case in PLATFORMS],
)
def test_span_names_the_platform_and_prices_from_its_catalogue(
    instrumented: Telemetry,
    make: Any,
    requested: str,
    served: str,
    provider: str,
    prices_id: str,
) -> None:
    client = make(_answering(served))
    call = _openai_call if hasattr(client, "chat") else _anthropic_call
    call(client, requested)

    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.provider.name"] == provider
    assert attrs["gen_ai.system"] == provider
    assert attrs["gen_ai.request.model"] == requested
    assert attrs["gen_ai.response.model"] == served
    usage = Usage(
        input_tokens=attrs["gen_ai.usage.input_tokens"],
        output_tokens=attrs["gen_ai.usage.output_tokens"],
        cache_read_tokens=attrs.get("gen_ai.usage.cache_read.input_tokens", 0),
    )
    expected = calc_price(usage, served, provider_id=prices_id).total_price
    assert attrs["canarytrace.cost_usd"] == pytest.approx(float(expected))
    if attrs["canarytrace.pinned"]:
        # Bedrock's and Vertex's own spellings of the pinned id are not drift.
        assert attrs["canarytrace.alias_drift"] is False

    duration = instrumented.metric_points("gen_ai.client.operation.duration")
    assert [point.attributes["gen_ai.provider.name"] for point in duration] == [provider]


def test_a_pinned_deployment_served_by_another_snapshot_is_drift(instrumented: Telemetry) -> None:
    """Azure upgrades a deployment's model version on its own schedule: a deployment
    named for the 08-06 snapshot answering from 11-20 is what alias drift is for."""
    client = _azure(_answering("gpt-4o-2024-11-20"))
    _openai_call(client, "gpt-4o-2024-08-06")

    attrs = instrumented.one_span().attributes
    assert attrs["canarytrace.pinned"] is True
    assert attrs["canarytrace.alias_drift"] is True


def test_a_pinned_anthropic_request_served_by_another_snapshot_is_drift(
    instrumented: Telemetry,
) -> None:
    client = anthropic.Anthropic(api_key="k", http_client=_answering("claude-3-5-sonnet-20240620"))
    _anthropic_call(client, "claude-3-5-sonnet-20241022")

    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.provider.name"] == "anthropic"
    assert attrs["canarytrace.alias_drift"] is True


@pytest.mark.parametrize(
    ("requested", "served", "same"),
    [
        ("gpt-4o-2024-08-06", "gpt-4o-2024-08-06", True),
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet-20241022", True),
        ("anthropic.claude-sonnet-4-20250514-v1:0", "claude-sonnet-4-20250514", True),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet-v2-20241022", True),
        ("gpt-4o-2024-08-06", "gpt-4o-2024-11-20", False),
        ("gpt-4o-2024-06-08", "gpt-4o-2024-08-06", False),  # same parts, another order
        ("gpt-4o-2024-07-18", "gpt-4o-mini-2024-07-18", False),  # another model
        ("us.anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-haiku-20241022", False),
    ],
)
def test_same_model_reads_platform_spellings(requested: str, served: str, same: bool) -> None:
    assert same_model(requested, served) is same


@pytest.mark.parametrize(
    ("host", "provider"),
    [
        ("api.openai.com", "openai"),
        ("contoso.openai.azure.com", "azure.ai.openai"),
        ("contoso.cognitiveservices.azure.com", "azure.ai.openai"),
        ("bedrock-runtime.eu-west-1.amazonaws.com", "aws.bedrock"),
        ("bedrock-runtime-fips.us-east-1.amazonaws.com", "aws.bedrock"),
        ("bedrock-mantle.us-east-1.api.aws", "aws.bedrock"),
        ("aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("europe-west4-aiplatform.googleapis.com", "gcp.vertex_ai"),
        ("aiplatform.eu.rep.googleapis.com", "gcp.vertex_ai"),
        ("generativelanguage.googleapis.com", "gcp.gemini"),
        ("api.groq.com", "groq"),
        ("api.x.ai", "x_ai"),
        ("api.mistral.ai", "mistral_ai"),
        ("api.perplexity.ai", "perplexity"),
        ("API.DEEPSEEK.COM", "deepseek"),
        # hosts only genai-prices knows: the conventions' name where there is one
        ("contoso.azure-api.net", "azure.ai.openai"),
        ("europe-west4-genai.googleapis.com", "gcp.gen_ai"),
        # else genai-prices' id for the API at that host
        ("openrouter.ai", "openrouter"),
        ("api.together.xyz", "together"),
        ("api.fireworks.ai", "fireworks"),
        # lookalikes keep the SDK's provider
        ("openai.azure.com.example.org", "openai"),
        ("bedrock-runtime.us-east-1.amazonaws.com.example.org", "openai"),
        ("openrouter.ai.example.org", "openai"),
        ("localhost", "openai"),
    ],
)
def test_an_openai_client_pointed_at_a_host_gets_that_hosts_provider(
    host: str, provider: str
) -> None:
    client = openai.OpenAI(api_key="k", base_url=f"https://{host}/v1")
    assert provider_name("openai", client, host) == provider


def test_an_unknown_platform_model_gets_no_cost_and_no_exception(
    instrumented: Telemetry, caplog: pytest.LogCaptureFixture
) -> None:
    client = _azure(_answering("house-model-7"))
    _openai_call(client, "house-model-7")

    attrs = instrumented.one_span().attributes
    assert attrs["gen_ai.provider.name"] == "azure.ai.openai"
    assert "canarytrace.cost_usd" not in attrs
    assert "azure.ai.openai model 'house-model-7'" in caplog.text


def test_async_platform_clients_are_named_too(instrumented: Telemetry) -> None:
    handler = _answer("gpt-4o-2024-11-20")

    async def answer(request: httpx2.Request) -> httpx2.Response:
        await request.aread()
        return handler(request)

    http = httpx2.AsyncClient(transport=httpx2.MockTransport(answer))
    azure = openai.AsyncAzureOpenAI(
        api_key="k",
        azure_endpoint="https://contoso.openai.azure.com",
        api_version="2024-10-21",
        http_client=http,
    )
    vertex_claude = anthropic.AsyncAnthropicVertex(
        region="us-east5", project_id="p", access_token="t", http_client=http
    )

    async def calls() -> None:
        await azure.chat.completions.create(model="prod-gpt4o", messages=PROMPT)
        await vertex_claude.messages.create(
            model="claude-3-5-sonnet-v2@20241022", max_tokens=64, messages=PROMPT
        )

    asyncio.run(calls())

    providers = [span.attributes["gen_ai.provider.name"] for span in instrumented.llm_spans()]
    assert providers == ["azure.ai.openai", "gcp.vertex_ai"]


@pytest.mark.parametrize(
    ("make", "model", "provider"),
    [
        (
            lambda **kw: anthropic.AnthropicVertex(
                region="us-east5", project_id="p", access_token="t", **kw
            ),
            "claude-3-5-sonnet-v2@20241022",
            "gcp.vertex_ai",
        ),
        (
            lambda **kw: anthropic.AnthropicBedrock(api_key="k", aws_region="us-east-1", **kw),
            "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
            "aws.bedrock",
        ),
    ],
    ids=["vertex", "bedrock"],
)
def test_the_platform_clients_beta_messages_are_traced(
    telemetry: Telemetry, make: Any, model: str, provider: str
) -> None:
    """Their `beta.messages` classes copy the first-party methods at `import anthropic`,
    before `instrument()` can patch them: without wrapping them too, only anthropic's
    own span (no tier, no cost) would be there."""
    from canarytrace.instrumentation import instrument, uninstrument

    instrument(tracer_provider=telemetry.provider)
    try:
        client = make(
            http_client=_answering("claude-3-5-sonnet-20241022"),
            open_telemetry={"tracer_provider": telemetry.provider},
        )
        client.beta.messages.create(model=model, max_tokens=64, messages=PROMPT)
    finally:
        uninstrument()

    span = telemetry.one_span()
    assert span.instrumentation_scope.name == "canarytrace"
    assert span.attributes["gen_ai.provider.name"] == provider
    assert span.attributes["canarytrace.cost_usd"] > 0


def test_an_azure_client_on_a_private_domain_is_still_azure() -> None:
    client = openai.AzureOpenAI(
        api_key="k", azure_endpoint="https://llm.contoso.internal", api_version="2024-10-21"
    )
    assert provider_name("openai", client, "llm.contoso.internal") == "azure.ai.openai"
